"""The Swarm follower: it asks for a pass on each (re)connect and on the events that matter, a
broken event stream is followed again after a backoff, and the tasks are polled: a pass while a
service has no running task, or when an engine's task stopped running."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from acestream_gateway.fleet.docker import UNREACHABLE, Filters, FleetError
from acestream_gateway.fleet.swarm_follow import TASK_POLL_S, SwarmFollower
from acestream_gateway.fleet.swarm_nodes import SWARM_EVENTS, SwarmEvent
from acestream_gateway.tasks import Backoff
from tests.support import wait_until

PREFIX = "acestream-engine-gw-"


class Source:
    """Each connect takes the next script: a list of events then a break, or a refusal."""

    def __init__(self, *scripts: list[SwarmEvent] | FleetError) -> None:
        self._scripts = list(scripts)
        self.filters: list[Filters] = []

    @asynccontextmanager
    async def watch_swarm(self, filters: Filters) -> AsyncIterator[AsyncIterator[SwarmEvent]]:
        self.filters.append(filters)
        script = self._scripts.pop(0) if self._scripts else []
        if isinstance(script, FleetError):
            raise script
        yield self._events(script)

    async def _events(self, events: list[SwarmEvent]) -> AsyncIterator[SwarmEvent]:
        for event in events:
            yield event
        if self._scripts:
            raise FleetError(UNREACHABLE, "the Docker event stream ended")
        await asyncio.Event().wait()


async def never_gone() -> bool:
    return False


async def run_until(follower: SwarmFollower, wakes: list[str], count: int) -> None:
    task = asyncio.create_task(follower.follow_events())
    try:
        await wait_until(lambda: len(wakes) >= count, timeout_s=5, interval_s=0.01)
        await asyncio.sleep(0.05)  # nothing more comes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_pass_on_connect_on_node_events_and_on_the_gateways_service_events() -> None:
    source = Source(
        [
            SwarmEvent("node", "n1", "update", "box1"),
            SwarmEvent("service", "s1", "update", "someone-elses-web"),
            SwarmEvent("service", "s2", "remove", PREFIX + "19000"),
        ]
    )
    wakes: list[str] = []
    follower = SwarmFollower(
        source=source,
        wake=lambda: wakes.append("pass"),
        waiting=lambda: False,
        tasks_gone=never_gone,
        service_prefix=PREFIX,
    )
    await run_until(follower, wakes, 3)
    assert len(wakes) == 3, "the connect, the node's event and the gateway's service's"
    assert source.filters == [SWARM_EVENTS]


async def test_a_broken_stream_is_followed_again_after_a_backoff_with_a_pass() -> None:
    source = Source(
        [SwarmEvent("node", "n1", "update", "box1")],
        FleetError(UNREACHABLE, "cannot reach Docker"),
        [],
    )
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    wakes: list[str] = []
    follower = SwarmFollower(
        source=source,
        wake=lambda: wakes.append("pass"),
        waiting=lambda: False,
        tasks_gone=never_gone,
        service_prefix=PREFIX,
        backoff=Backoff(first_s=0.5, cap_s=15.0),
        sleep=sleep,
    )
    await run_until(follower, wakes, 3)
    assert len(wakes) == 3, "connect, event, and the reconnect (events may have been missed)"
    assert len(source.filters) == 3
    assert len(pauses) == 2, "one backoff per failed follow"
    assert pauses[1] > pauses[0], "the backoff grows until a connect holds"


async def poll(waiting: bool, gone: list[bool | FleetError]) -> tuple[list[str], int]:
    """Four polls with ``gone`` the answers of the engines' task listing: the passes asked for
    and the listings made."""
    slept: list[float] = []
    wakes: list[str] = []
    answers = list(gone)
    listings = 0

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 4:
            raise asyncio.CancelledError

    async def tasks_gone() -> bool:
        nonlocal listings
        listings += 1
        answer = answers.pop(0)
        if isinstance(answer, FleetError):
            raise answer
        return answer

    follower = SwarmFollower(
        source=Source(),
        wake=lambda: wakes.append("pass"),
        waiting=lambda: waiting,
        tasks_gone=tasks_gone,
        service_prefix=PREFIX,
        sleep=sleep,
    )
    with pytest.raises(asyncio.CancelledError):
        await follower.poll_tasks()
    assert slept == [TASK_POLL_S] * 5
    return wakes, listings


async def test_a_pass_every_poll_while_a_service_waits_for_its_task_with_no_listing() -> None:
    assert await poll(True, []) == (["pass"] * 4, 0)


async def test_a_pass_when_an_engines_task_stopped_running_and_only_then() -> None:
    assert await poll(False, [False, True, False, False]) == (["pass"], 4)


async def test_a_listing_docker_refuses_asks_for_nothing_and_polling_goes_on() -> None:
    refused = FleetError(UNREACHABLE, "cannot reach Docker")
    assert await poll(False, [refused, refused, True, False]) == (["pass"], 4)
