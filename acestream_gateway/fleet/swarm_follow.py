"""Following a Swarm between passes: its service and node events, and its tasks while one is
awaited.

The container events the Docker backend follows tell of a task container's death on the
manager's own node only; a node going down or drained, or a service of the gateway's updated or
removed, shows in the manager's service and node events (``swarm_nodes.py``), each of which asks
for a pass at once. After each (re)connect a pass is asked for too, since events may have been
missed meanwhile. Docker emits no task events, and a manager sends no container events of other
nodes: a task killed on a worker shows nowhere but in the task list, while Swarm's new task for
it may answer on the same address and port within seconds (so health probes would not tell). So
every second the tasks are looked at: while a service of the gateway's has no running task a
pass is asked for (its new task is found as soon as it runs), and otherwise the engines' tasks
are listed (one Docker call, only while there are engines) and a pass is asked for when one of
them no longer runs.

Whether Docker can be reached is the container event follower's to report; a broken stream here
is logged and followed again with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import structlog

from ..logs import get_logger
from ..tasks import Backoff
from .docker import Filters, FleetError
from .swarm_nodes import SWARM_EVENTS, SwarmEvent, wakes

log = get_logger(__name__)

TASK_POLL_S = 1.0  # how often tasks are looked at while a service has no running task


class SwarmEventSource(Protocol):
    """Where Swarm events come from (``DockerEngines`` of a manager)."""

    def watch_swarm(
        self, filters: Filters
    ) -> AbstractAsyncContextManager[AsyncIterator[SwarmEvent]]: ...


class SwarmFollower:
    """Asks for passes when the Swarm changes; see the module docstring."""

    def __init__(
        self,
        *,
        source: SwarmEventSource,
        wake: Callable[[], None],
        waiting: Callable[[], bool],
        tasks_gone: Callable[[], Awaitable[bool]],
        service_prefix: str,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``wake``: ask for a pass now; ``waiting``: whether a service has no running task;
        ``tasks_gone``: whether a task the pool holds as an engine no longer runs (may raise
        :class:`FleetError`); ``service_prefix``: how the names of the gateway's services
        begin."""
        self._source = source
        self._wake = wake
        self._waiting = waiting
        self._tasks_gone = tasks_gone
        self._prefix = service_prefix
        self._backoff = backoff or Backoff(first_s=0.5, cap_s=15.0)
        self._sleep = sleep

    async def follow_events(self) -> None:
        """Follow the service and node events until cancelled, reconnecting with backoff."""
        structlog.contextvars.clear_contextvars()
        while True:
            try:
                async with self._source.watch_swarm(SWARM_EVENTS) as events:
                    self._wake()
                    self._backoff.reset()
                    async for event in events:
                        self.apply(event)
            except FleetError as exc:
                delay = self._backoff.next()
                log.debug("swarm_events_broken", reason=exc.message, retry_in_s=delay)
                await self._sleep(delay)

    def apply(self, event: SwarmEvent) -> None:
        """A node's event, or one of the gateway's services': a pass now."""
        if wakes(event, self._prefix):
            log.info("swarm_changed", kind=event.kind, action=event.action, name=event.name)
            self._wake()

    async def poll_tasks(self) -> None:
        """Every TASK_POLL_S, ask for a pass while a service has no running task, or when an
        engine's task stopped running; see the module docstring."""
        while True:
            await self._sleep(TASK_POLL_S)
            if self._waiting():
                self._wake()
                continue
            try:
                gone = await self._tasks_gone()
            except FleetError as exc:  # the passes report Docker's reachability
                log.debug("swarm_tasks_unlisted", reason=exc.message)
                continue
            if gone:
                log.info("swarm_task_stopped")
                self._wake()
