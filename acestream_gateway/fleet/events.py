"""The Docker event follower: the fleet hears of a dead or unhealthy engine within a second.

The reconciler's passes run on an interval; an engine container that dies between two of them would
keep its claims (and its players waiting) until the next pass. The follower watches Docker's event
stream for this instance's containers instead and tells the reconciler at once.

It works list-then-watch, as Kubernetes controllers do: it subscribes first, then has the
reconciler relist (a full pass), and only then applies events, so nothing that happened while it
was not connected is missed. A broken stream or a failed connect means Docker cannot be reached:
the reconciler is told (it blocks provisioning; engines and streams are left alone, since an engine
that still answers keeps serving), and the follower reconnects with backoff. What to do for which
event is the pure :func:`react`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import structlog

from ..logs import get_logger
from ..tasks import Backoff
from .docker import ContainerEvent, Filters, FleetError

log = get_logger(__name__)

WATCHED_ACTIONS = ("die", "oom", "destroy", "health_status")


class Reaction(enum.Enum):
    """What one container event means for the fleet."""

    STOPPED = "stopped"  # the container exited: its engine leaves the pool, its port stays held
    DESTROYED = "destroyed"  # the container is gone: its engine leaves the pool, its port is free
    UNHEALTHY = "unhealthy"  # Docker's health check failed: no new claims, its claims are lost
    NONE = "none"


def react(event: ContainerEvent) -> Reaction:
    """The fleet's reaction to one container event."""
    if event.action in ("die", "oom"):
        return Reaction.STOPPED
    if event.action == "destroy":
        return Reaction.DESTROYED
    if event.action == "health_status" and event.health == "unhealthy":
        return Reaction.UNHEALTHY
    return Reaction.NONE


def event_filter(instance: Filters) -> Filters:
    """Docker event filters for the watched container events of one instance's containers."""
    return {**instance, "type": ["container"], "event": list(WATCHED_ACTIONS)}


class EventSource(Protocol):
    """Where events come from (``DockerEngines``)."""

    def watch(
        self, filters: Filters
    ) -> AbstractAsyncContextManager[AsyncIterator[ContainerEvent]]: ...


class Fleet(Protocol):
    """What the follower tells (the reconciler)."""

    async def relist(self) -> None: ...

    def container_stopped(self, container_id: str, action: str) -> None: ...

    def container_destroyed(self, container_id: str) -> None: ...

    def container_unhealthy(self, container_id: str) -> None: ...

    def docker_reachable(
        self, reachable: bool, reason: str = "", retry_in_s: float = 0
    ) -> None: ...


class EventFollower:
    """Follows the event stream for ``fleet`` until cancelled; see the module docstring."""

    def __init__(
        self,
        *,
        source: EventSource,
        fleet: Fleet,
        filters: Filters,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._source = source
        self._fleet = fleet
        self._filters = filters
        self._backoff = backoff or Backoff(first_s=0.5, cap_s=15.0)
        self._sleep = sleep

    async def run(self) -> None:
        """Connect, relist, apply events; on a break report Docker unreachable and reconnect."""
        structlog.contextvars.clear_contextvars()
        while True:
            try:
                await self._follow()
            except FleetError as exc:
                delay = self._backoff.next()
                self._fleet.docker_reachable(False, exc.message, delay)
                await self._sleep(delay)

    async def _follow(self) -> None:
        async with self._source.watch(self._filters) as events:
            await self._relist()
            self._backoff.reset()
            async for event in events:
                self.apply(event)

    async def _relist(self) -> None:
        try:
            await self._fleet.relist()
        except FleetError as exc:
            if exc.unreachable:
                raise
            # Docker answers but the pass failed (a container it would not remove, say): the
            # reconciler's loop retries its passes; events are followed all the same.
            log.warning("fleet_relist_failed", reason=exc.message)
        self._fleet.docker_reachable(True)

    def apply(self, event: ContainerEvent) -> None:
        """Tell the fleet what ``event`` means for it."""
        reaction = react(event)
        if reaction is Reaction.STOPPED:
            self._fleet.container_stopped(event.container_id, event.action)
        elif reaction is Reaction.DESTROYED:
            self._fleet.container_destroyed(event.container_id)
        elif reaction is Reaction.UNHEALTHY:
            self._fleet.container_unhealthy(event.container_id)
