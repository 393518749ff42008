"""Host ports for engines: each engine holds exactly one, reserved once and freed once (rule 4).

A port is freed only when its container is gone. A port that another program holds (Docker could
not bind it) is set aside for a while and tried again later, never given up for good: with a range
of exactly ``MAX_ACTIVE_REPLICAS`` ports every port is needed. Pure apart from an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

# How Docker words a host port it could not bind (Docker's own allocator, or the kernel's).
_BIND_FAILURES = ("port is already allocated", "address already in use")


class PortsExhausted(Exception):
    """Every port of the range is held or set aside."""


def is_bind_failure(message: str) -> bool:
    """Whether a Docker error says the host port was taken by someone else."""
    text = message.lower()
    return any(phrase in text for phrase in _BIND_FAILURES)


class PortAllocator:
    """The ports of one Docker endpoint's range, who holds them, and which are set aside."""

    def __init__(
        self,
        lo: int,
        hi: int,
        *,
        recheck_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < lo <= hi < 65536:
            raise ValueError(f"bad port range {lo}-{hi}")
        self.lo, self.hi = lo, hi
        self.recheck_s = recheck_s
        self._clock = clock
        self._held: dict[int, str] = {}
        self._aside: dict[int, float] = {}  # port -> monotonic time it may be tried again

    @property
    def held(self) -> dict[int, str]:
        return dict(self._held)

    @property
    def aside(self) -> list[int]:
        """Ports set aside now (they failed to bind and are not due for a new try yet)."""
        now = self._clock()
        return sorted(p for p, until in self._aside.items() if until > now)

    def in_range(self, port: int) -> bool:
        return self.lo <= port <= self.hi

    def outside_range(self) -> dict[int, str]:
        """Held ports outside the range (engines adopted from an older configuration)."""
        return {p: owner for p, owner in self._held.items() if not self.in_range(p)}

    def reserve(self, owner: str, avoid: Iterable[int] = (), within: range | None = None) -> int:
        """The lowest port that is free and not set aside, now held by ``owner``; ``within``
        narrows the search to part of the range (one VPN's share)."""
        span = self._span(within)
        skip = set(avoid) | set(self.aside)
        for port in span:
            if port not in self._held and port not in skip:
                self._held[port] = owner
                return port
        raise PortsExhausted(f"all ports {span.start}-{span.stop - 1} are in use or set aside")

    def free(self, within: range | None = None, avoid: Iterable[int] = ()) -> int:
        """How many ports (of ``within``) :meth:`reserve` could hand out now."""
        skip = set(avoid) | set(self.aside) | set(self._held)
        return sum(1 for port in self._span(within) if port not in skip)

    def _span(self, within: range | None) -> range:
        full = range(self.lo, self.hi + 1)
        if within is None:
            return full
        return range(max(full.start, within.start), min(full.stop, within.stop))

    def claim(self, port: int, owner: str) -> bool:
        """Hold a known port (adoption); True when it was free or already ``owner``'s."""
        holder = self._held.setdefault(port, owner)
        return holder == owner

    def rename(self, port: int, owner: str) -> None:
        """Give a held port a new owner (a reservation becomes a container id)."""
        if port in self._held:
            self._held[port] = owner

    def release(self, port: int) -> None:
        """The port's container is gone (or was never made): anyone may have it."""
        self._held.pop(port, None)

    def set_aside(self, port: int) -> None:
        """Free a port that failed to bind and skip it for ``recheck_s`` seconds."""
        self._held.pop(port, None)
        self._aside[port] = self._clock() + self.recheck_s

    def __contains__(self, port: object) -> bool:
        return port in self._held
