"""Which Docker endpoint a new engine goes to, and how the engine slots are shared, as pure
decisions (see ``docs/TOPOLOGY.md``).

``MAX_ACTIVE_REPLICAS`` caps the engines of all endpoints together; each endpoint's
``max_engines`` caps its own share. A new engine goes to the reachable endpoint with the most free
room (its share's free slots, bounded by its free ports), the earlier one in ``DOCKER_ENDPOINTS``
on ties; an endpoint that cannot be reached, or has no room, gets none. So engines spread over the
endpoints, and losing one costs only the engines it carried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class EndpointRoom:
    """One endpoint as placement sees it."""

    name: str
    reachable: bool
    free: int  # engines it may still take: its share's free slots, bounded by its free ports


def choose_endpoint(rooms: Sequence[EndpointRoom]) -> str | None:
    """The endpoint the next engine goes to: the reachable one with the most free room, the
    earliest on ties; None when none has room."""
    best: EndpointRoom | None = None
    for room in rooms:
        if room.reachable and room.free > 0 and (best is None or room.free > best.free):
            best = room
    return None if best is None else best.name


def spread(rooms: Sequence[EndpointRoom], wanted: int, total_room: int) -> dict[str, int]:
    """How many of ``wanted`` new engines each endpoint starts, one at a time by
    :func:`choose_endpoint`, never more than ``total_room`` (MAX_ACTIVE_REPLICAS' free slots)."""
    left = {r.name: r.free for r in rooms}
    counts: dict[str, int] = {}
    for _ in range(max(0, min(wanted, total_room))):
        now = [EndpointRoom(r.name, r.reachable, left[r.name]) for r in rooms]
        name = choose_endpoint(now)
        if name is None:
            break
        left[name] -= 1
        counts[name] = counts.get(name, 0) + 1
    return counts


class FleetSlots:
    """The engine slots of all endpoints together: ``MAX_ACTIVE_REPLICAS`` over the sum of what
    each endpoint's admission point has taken (synchronous, so nothing takes a slot between a
    check and a take)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counters: list[SlotCounter] = []

    def join(self, counter: SlotCounter) -> None:
        """Count ``counter``'s slots (one endpoint's admission point) in the total."""
        self._counters.append(counter)

    @property
    def taken(self) -> int:
        return sum(c.counted for c in self._counters)

    def room(self) -> int:
        return max(0, self.limit - self.taken)


class SlotCounter(Protocol):
    """What :class:`FleetSlots` counts: the slots an admission point takes."""

    @property
    def counted(self) -> int: ...
