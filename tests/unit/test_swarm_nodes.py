"""A Swarm's nodes and events as the gateway reads them: which nodes' tasks are engines, why an
engine left, the nodes in the status, and which service and node events ask for a pass."""

from __future__ import annotations

import json

import pytest

from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.fleet.swarm_nodes import (
    NodeRecord,
    SwarmEvent,
    engine_addresses,
    leaving_reason,
    node_record,
    node_status,
    parse_swarm_event,
    wakes,
)


def _node(
    node_id: str, state: str = "ready", availability: str = "active", addr: str = ""
) -> NodeRecord:
    return NodeRecord(
        node_id, f"h-{node_id}", addr or "10.0.0.5", "worker", availability, state, {}
    )


def test_a_node_is_read_from_the_managers_answer() -> None:
    info = {
        "ID": "n1",
        "Description": {"Hostname": "box1"},
        "Spec": {"Role": "manager", "Availability": "drain", "Labels": {"acestream": "true"}},
        "Status": {"State": "ready", "Addr": "10.0.0.5"},
    }
    node = node_record(info)
    assert node == NodeRecord(
        "n1", "box1", "10.0.0.5", "manager", "drain", "ready", {"acestream": "true"}
    )
    assert not node.reachable
    assert node.condition == "drained"


@pytest.mark.parametrize(
    ("status_addr", "manager_addr", "address"),
    [
        ("10.0.0.5", "10.0.0.9:2377", "10.0.0.5"),  # Status.Addr, when usable, is the address
        ("0.0.0.0", "10.0.0.9:2377", "10.0.0.9"),  # moby/moby#35437: the manager's own address
        ("0.0.0.0", "[fd00::9]:2377", "fd00::9"),
        ("0.0.0.0", None, "0.0.0.0"),  # a worker in that state has no address: no engines
        ("0.0.0.0", "0.0.0.0:2377", "0.0.0.0"),
    ],
)
def test_a_manager_reporting_no_address_is_reached_at_its_manager_address(
    status_addr: str, manager_addr: str | None, address: str
) -> None:
    info: dict[str, object] = {"ID": "n1", "Status": {"State": "ready", "Addr": status_addr}}
    if manager_addr is not None:
        info["ManagerStatus"] = {"Leader": True, "Addr": manager_addr}
    node = node_record(info)
    assert node.address == address
    expected = {} if address == "0.0.0.0" else {"n1": address}
    assert engine_addresses([node]) == expected


def test_only_ready_undrained_nodes_with_an_address_hold_engines() -> None:
    nodes = [
        _node("ok"),
        _node("paused", availability="pause"),  # its tasks run on
        _node("drained", availability="drain"),
        _node("down", state="down"),
        _node("unknown", state="unknown"),
        _node("disconnected", state="disconnected"),
        _node("anywhere", addr="0.0.0.0"),
    ]
    assert engine_addresses(nodes) == {"ok": "10.0.0.5", "paused": "10.0.0.5"}
    assert [n.id for n in nodes if n.reachable] == ["ok", "anywhere"]


def test_an_engine_that_left_says_whether_its_node_was_lost_or_drained() -> None:
    nodes = {n.id: n for n in [_node("ok"), _node("d", availability="drain"), _node("x", "down")]}
    assert leaving_reason("d", nodes) == "its node h-d is drained"
    assert leaving_reason("x", nodes) == "its node h-x is down"
    assert leaving_reason("ok", nodes) == "its task stopped or Swarm rescheduled it"
    assert leaving_reason(None, nodes) == "its task stopped or Swarm rescheduled it"


def test_the_status_lists_each_node_with_the_engines_on_it() -> None:
    on_b = Engine("t1", "e1", EngineAddress("10.0.0.5", 19001), EngineState.READY, node="b")
    also_b = Engine("t3", "e3", EngineAddress("10.0.0.5", 19000), node="b")
    waiting = Engine("svc2", "e2", EngineAddress("0.0.0.0", 19002))  # no task yet: no node
    b, a = _node("b"), _node("a", availability="drain", addr="0.0.0.0")
    listed = node_status([b, a], [on_b, waiting, also_b])
    assert [n.id for n in listed] == ["a", "b"], "by hostname"
    assert listed[0].address is None
    assert listed[0].engines == ()
    assert [(e.id, e.name, e.port, e.state) for e in listed[1].engines] == [
        ("t3", "e3", 19000, "starting"),
        ("t1", "e1", 19001, "ready"),
    ]


def _line(kind: str, action: str, name: str, **extra: str) -> bytes:
    attributes = {"name": name, **extra}
    return json.dumps(
        {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": "x1", "Attributes": attributes},
            "scope": "swarm",
        }
    ).encode()


def test_service_and_node_events_are_read_and_others_ignored() -> None:
    drained = _line("node", "update", "box1", **{"availability.new": "drain"})
    assert parse_swarm_event(drained) == SwarmEvent("node", "x1", "update", "box1")
    removed = _line("service", "remove", "acestream-engine-gw-19000")
    assert parse_swarm_event(removed) == SwarmEvent(
        "service", "x1", "remove", "acestream-engine-gw-19000"
    )
    assert parse_swarm_event(_line("container", "die", "c")) is None
    assert parse_swarm_event(b"not json") is None


def test_node_events_and_the_gateways_service_events_ask_for_a_pass() -> None:
    prefix = "acestream-engine-gw-"
    assert wakes(SwarmEvent("node", "n", "update", "box1"), prefix)
    assert wakes(SwarmEvent("service", "s", "remove", "acestream-engine-gw-19000"), prefix)
    assert not wakes(SwarmEvent("service", "s", "update", "someone-elses-web"), prefix)
