"""Docker events: what each event means, how a stream line is read, and list-then-watch order.

The follower's Docker behaviour is tested against the real daemon (tests/integration); here a
scripted event source stands in for it only to check the follower's own logic: it relists after
every (re)connect and before any event, reports an outage once per break, and backs off.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.fleet.docker import UNREACHABLE, ContainerEvent, FleetError, parse_event
from acestream_gateway.fleet.events import (
    WATCHED_ACTIONS,
    EventFollower,
    Reaction,
    event_filter,
    react,
)
from acestream_gateway.tasks import Backoff

ACTIONS = [*WATCHED_ACTIONS, "start", "stop", "kill", "create", "exec_start"]
HEALTH = [None, "healthy", "unhealthy", "starting"]

events_st = st.builds(
    ContainerEvent,
    container_id=st.sampled_from(["c1", "c2", "c3"]),
    action=st.sampled_from(ACTIONS),
    health=st.sampled_from(HEALTH),
)


# --- decisions ---------------------------------------------------------------------------------


@given(events_st)
def test_death_leaves_the_pool_removal_frees_the_port_and_only_a_failed_health_check_is_unhealthy(
    event: ContainerEvent,
) -> None:
    reaction = react(event)
    if event.action in ("die", "oom"):
        assert reaction is Reaction.STOPPED
    elif event.action == "destroy":
        assert reaction is Reaction.DESTROYED
    elif event.action == "health_status" and event.health == "unhealthy":
        assert reaction is Reaction.UNHEALTHY
    else:
        assert reaction is Reaction.NONE


def test_the_filter_selects_the_watched_container_events_of_the_instance_only() -> None:
    instance = {"label": ["acestream-gateway.managed=true", "acestream-gateway.instance=a"]}
    assert event_filter(instance) == {
        **instance,
        "type": ["container"],
        "event": ["die", "oom", "destroy", "health_status"],
    }


# --- reading Docker's lines --------------------------------------------------------------------


def docker_line(action: str, container_id: str = "abc", **attributes: str) -> bytes:
    """A line as Docker 20.10 writes it (captured from ``GET /events``)."""
    return (
        json.dumps(
            {
                "status": action,
                "id": container_id,
                "from": "acestream-gateway/emulator:1",
                "Type": "container",
                "Action": action,
                "Actor": {"ID": container_id, "Attributes": {"name": "engine-1", **attributes}},
                "scope": "local",
                "time": 1796142930,
                "timeNano": 1796142930627090471,
            }
        ).encode()
        + b"\n"
    )


def test_a_health_change_is_read_as_the_health_status_action_with_its_status() -> None:
    assert parse_event(docker_line("health_status: unhealthy")) == ContainerEvent(
        "abc", "health_status", "unhealthy", "engine-1"
    )


def test_a_death_is_read_with_its_container_id_and_name() -> None:
    assert parse_event(docker_line("die", "f00", exitCode="137")) == ContainerEvent(
        "f00", "die", None, "engine-1"
    )


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json\n",
        b"[]\n",
        b'{"Type": "network", "Action": "connect", "id": "x"}\n',
        b'{"Type": "container", "Action": "die"}\n',
        b'{"Type": "container", "id": "x"}\n',
    ],
)
def test_lines_that_are_not_container_events_are_skipped(line: bytes) -> None:
    assert parse_event(line) is None


@given(st.binary(max_size=200))
def test_any_line_is_read_or_skipped_never_raises(line: bytes) -> None:
    event = parse_event(line)
    assert event is None or isinstance(event, ContainerEvent)


# --- the follower's order ------------------------------------------------------------------------


@dataclass
class Connection:
    """One scripted connection: refused, or a few events and then a break."""

    refused: bool = False
    events: list[ContainerEvent] = field(default_factory=list)


class ScriptDone(Exception):
    """The script has no more connections: ends the follower in the test."""


class ScriptedSource:
    def __init__(self, script: list[Connection], calls: list[str]) -> None:
        self._script = list(script)
        self._calls = calls

    @asynccontextmanager
    async def watch(
        self, filters: dict[str, list[str]]
    ) -> AsyncIterator[AsyncIterator[ContainerEvent]]:
        if not self._script:
            raise ScriptDone
        connection = self._script.pop(0)
        if connection.refused:
            self._calls.append("refused")
            raise FleetError(UNREACHABLE, "cannot reach Docker")
        self._calls.append("connected")
        yield self._events(connection.events)

    async def _events(self, events: list[ContainerEvent]) -> AsyncIterator[ContainerEvent]:
        for event in events:
            yield event
        raise FleetError(UNREACHABLE, "the Docker event stream ended")


class RecordingFleet:
    def __init__(self, calls: list[str], relist_error: FleetError | None = None) -> None:
        self.calls = calls
        self.relist_error = relist_error

    async def relist(self) -> None:
        self.calls.append("relist")
        if self.relist_error is not None:
            raise self.relist_error

    def container_stopped(self, container_id: str, action: str) -> None:
        self.calls.append(f"stopped {container_id}")

    def container_destroyed(self, container_id: str) -> None:
        self.calls.append(f"destroyed {container_id}")

    def container_unhealthy(self, container_id: str) -> None:
        self.calls.append(f"unhealthy {container_id}")

    def docker_reachable(self, reachable: bool, reason: str = "", retry_in_s: float = 0) -> None:
        self.calls.append("reachable" if reachable else f"unreachable {retry_in_s:g}")


def follow(script: list[Connection], relist_error: FleetError | None = None) -> list[str]:
    """Run a follower over ``script``; every call it made, and every sleep, in order."""
    calls: list[str] = []

    async def sleep(delay: float) -> None:
        calls.append(f"sleep {delay:g}")

    follower = EventFollower(
        source=ScriptedSource(script, calls),
        fleet=RecordingFleet(calls, relist_error),
        filters={},
        backoff=Backoff(first_s=1, cap_s=8),
        sleep=sleep,
    )
    with pytest.raises(ScriptDone):
        asyncio.run(follower.run())
    return calls


def test_it_relists_after_connecting_and_before_the_first_event() -> None:
    died = ContainerEvent("c1", "die")
    assert follow([Connection(events=[died])]) == [
        "connected",
        "relist",
        "reachable",
        "stopped c1",
        "unreachable 1",
        "sleep 1",
    ]


def test_refused_connects_back_off_with_growing_delays_and_a_connect_starts_over() -> None:
    calls = follow([Connection(refused=True)] * 5 + [Connection(), Connection(refused=True)])
    sleeps = [c for c in calls if c.startswith("sleep")]
    assert sleeps == ["sleep 1", "sleep 2", "sleep 4", "sleep 8", "sleep 8", "sleep 1", "sleep 2"]


def test_a_relist_that_docker_refuses_still_follows_events() -> None:
    unhealthy = ContainerEvent("c2", "health_status", "unhealthy")
    calls = follow([Connection(events=[unhealthy])], relist_error=FleetError(500, "busy"))
    assert calls[:4] == ["connected", "relist", "reachable", "unhealthy c2"]


def test_a_relist_that_cannot_reach_docker_counts_as_an_outage() -> None:
    calls = follow(
        [Connection(events=[ContainerEvent("c1", "die")])],
        relist_error=FleetError(UNREACHABLE, "gone"),
    )
    assert calls == ["connected", "relist", "unreachable 1", "sleep 1"]


@given(st.lists(st.builds(Connection, st.booleans(), st.lists(events_st, max_size=4)), max_size=8))
def test_every_event_is_applied_after_a_relist_of_its_own_connection(
    script: list[Connection],
) -> None:
    calls = follow(script)
    relisted = False
    for call in calls:
        if call == "connected":
            relisted = False
        elif call == "relist":
            relisted = True
        elif call.split()[0] in ("stopped", "destroyed", "unhealthy"):
            assert relisted, calls
    # Every connection ends in exactly one outage report and one sleep.
    assert sum(c.startswith("unreachable") for c in calls) == len(script)
    assert sum(c.startswith("sleep") for c in calls) == len(script)
    applied = [c for c in calls if c.split()[0] in ("stopped", "destroyed", "unhealthy")]
    expected = [
        e for c in script if not c.refused for e in c.events if react(e) is not Reaction.NONE
    ]
    assert len(applied) == len(expected)
