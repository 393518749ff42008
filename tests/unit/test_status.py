"""The orchestrator status and readiness, assembled from snapshots: field names, types, rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import EngineLoad, EnginePool
from acestream_gateway.engines.provisioning import Blocked, BlockedReason
from acestream_gateway.fleet.swarm_nodes import NodeEngine, NodeStatus
from acestream_gateway.ops import status
from tests.support import Endpoint, endpoints_fleet
from tests.support import numbered_engine as engine

STATES = list(EngineState)
REASONS = list(BlockedReason)


@dataclass(frozen=True)
class Vpn:
    name: str
    connected: bool
    health: str | None
    forwarded_port: int | None
    container_id: str | None = None
    engines: tuple[str, ...] = ()


loads_st = st.lists(
    st.tuples(st.sampled_from(STATES), st.integers(0, 2), st.integers(0, 2)), max_size=8
).map(lambda specs: [EngineLoad(engine(i, s), p, a, None) for i, (s, p, a) in enumerate(specs)])
blocks_st = st.none() | st.builds(Blocked, st.sampled_from(REASONS), st.text(min_size=1))
vpns_st = st.lists(
    st.builds(
        Vpn,
        st.text(min_size=1, max_size=8),
        st.booleans(),
        st.sampled_from([None, "healthy", "unhealthy"]),
        st.none() | st.integers(1, 65535),
    ),
    max_size=3,
)


def pool_of(specs: list[tuple[EngineState, int]], max_engines: int) -> EnginePool:
    pool = EnginePool(max_streams_per_engine=2, max_engines=max_engines, provision_wait_s=0)
    for n in range(len(specs)):
        pool.add(engine(n, EngineState.READY))
    for n, (_, streams) in enumerate(specs):
        for k in range(streams):
            pool._register(pool.engines()[n], f"content-{n}-{k}")
    for n, (state, _) in enumerate(specs):
        pool.set_state(f"e{n}", state)
    return pool


@given(
    st.lists(st.tuples(st.sampled_from(STATES), st.integers(0, 2)), max_size=8),
    st.integers(1, 10),
    st.none() | st.sampled_from(REASONS),
    vpns_st,
)
def test_the_status_has_the_orchestrators_fields_with_their_types(
    specs: list[tuple[EngineState, int]],
    max_engines: int,
    reason: BlockedReason | None,
    vpns: list[Vpn],
) -> None:
    pool = pool_of(specs, max_engines)
    if reason is not None:
        pool.block(reason, "blocked for a test", 12.2)
    fleet = status.FleetFacts(breaker="closed", vpns=vpns)
    body = status.status(status.take_snapshot(pool, [], fleet, min_replicas=1, wall=0.0))
    assert set(body) == {
        "status",
        "engines",
        "streams",
        "capacity",
        "vpn",
        "endpoints",
        "provisioning",
        "channels",
        "timestamp",
    }
    assert body["channels"] == {"tuners": 0, "tuned": 0, "without_source": 0, "playing": []}
    assert body["status"] in ("healthy", "degraded", "unavailable")
    assert all(isinstance(body["engines"][k], int) for k in ("total", "running", "healthy"))
    assert isinstance(body["engines"]["unhealthy"], int)
    assert body["streams"] == {"active": 0, "total": 0, "players": 0, "players_hls": 0}
    capacity = body["capacity"]
    for key in ("total", "used", "available", "max_replicas", "min_replicas"):
        assert isinstance(capacity[key], int)
    assert 0 <= capacity["used"] <= capacity["total"]
    assert capacity["available"] == capacity["total"] - capacity["used"]
    assert capacity["max_replicas"] == max_engines
    vpn = body["vpn"]
    assert set(vpn) >= {"enabled", "connected", "health", "container", "forwarded_port"}
    assert vpn["enabled"] is bool(vpns)
    assert vpn["connected"] is any(v.connected for v in vpns)
    assert len(vpn["vpns"]) == len(vpns)
    assert_provisioning(body["provisioning"], pool)
    assert body["timestamp"] == "1970-01-01T00:00:00Z"


def assert_provisioning(section: dict[str, Any], pool: EnginePool) -> None:
    assert set(section) == {
        "can_provision",
        "circuit_breaker_state",
        "blocked_reason",
        "blocked_reason_details",
    }
    block = pool.blocked()
    assert section["can_provision"] is (block is None)
    assert section["circuit_breaker_state"] == "closed"
    if block is None:
        assert section["blocked_reason"] is None
        assert section["blocked_reason_details"] is None
        return
    details = section["blocked_reason_details"]
    assert set(details) == {"code", "message", "recovery_eta_seconds", "can_retry", "should_wait"}
    assert details["code"] == block.reason.value
    assert isinstance(details["message"], str)
    assert details["recovery_eta_seconds"] is None or isinstance(
        details["recovery_eta_seconds"], int
    )
    assert isinstance(details["can_retry"], bool)
    assert isinstance(details["should_wait"], bool)


@given(loads_st, blocks_st)
def test_unavailable_means_no_ready_engine_and_a_blocked_fleet(
    loads: list[EngineLoad], block: Blocked | None
) -> None:
    verdict = status.overall_status(loads, block)
    no_ready = all(x.engine.state is not EngineState.READY for x in loads)
    assert (verdict == "unavailable") is (block is not None and no_ready)


@given(loads_st, blocks_st)
def test_degraded_means_an_unhealthy_engine_or_a_fault_behind_the_block(
    loads: list[EngineLoad], block: Blocked | None
) -> None:
    verdict = status.overall_status(loads, block)
    if verdict == "unavailable":
        return
    unhealthy = any(x.engine.state is EngineState.UNHEALTHY for x in loads)
    fault = block is not None and block.reason is not BlockedReason.MAX_CAPACITY
    assert (verdict == "degraded") is (unhealthy or fault)


def test_a_full_busy_fleet_is_healthy_and_ready_for_joins_but_says_it_cannot_place() -> None:
    pool = pool_of([(EngineState.READY, 2), (EngineState.READY, 2)], max_engines=2)
    snapshot = status.take_snapshot(pool, [], status.FleetFacts(), min_replicas=1, wall=0.0)
    assert status.status(snapshot)["status"] == "healthy"
    assert status.ready(snapshot)
    body = status.readiness(snapshot)
    assert body["ready"] is True
    assert body["can_place_now"] is False
    assert body["can_provision"] is False
    assert body["reason"] == "max_capacity"
    provisioning = status.status(snapshot)["provisioning"]
    assert provisioning["can_provision"] is False


def test_a_full_fleet_of_unhealthy_engines_is_not_ready() -> None:
    pool = pool_of([(EngineState.UNHEALTHY, 1), (EngineState.DRAINING, 0)], max_engines=2)
    snapshot = status.take_snapshot(pool, [], status.FleetFacts(), min_replicas=1, wall=0.0)
    assert not status.ready(snapshot)
    assert status.readiness(snapshot)["reason"] == "max_capacity"


@given(loads_st, blocks_st, st.booleans())
def test_ready_means_adopted_and_a_ready_engine_or_a_fleet_that_can_grow(
    loads: list[EngineLoad], block: Blocked | None, adopted: bool
) -> None:
    pool = pool_of([(load.engine.state, 0) for load in loads], max_engines=10)
    if block is not None:
        pool.block(block.reason, block.message)
    snapshot = status.take_snapshot(
        pool, [], status.FleetFacts(adopted=adopted), min_replicas=1, wall=0.0
    )
    serving = any(load.engine.state is EngineState.READY for load in loads)
    assert status.ready(snapshot) is (adopted and (serving or block is None))


def test_room_on_a_running_engine_is_ready_even_while_provisioning_is_blocked() -> None:
    pool = pool_of([(EngineState.READY, 1)], max_engines=5)
    pool.block(BlockedReason.DOCKER_UNAVAILABLE, "docker is gone")
    snapshot = status.take_snapshot(pool, [], status.FleetFacts(), min_replicas=1, wall=0.0)
    assert status.ready(snapshot)
    assert status.status(snapshot)["status"] == "degraded"


def test_an_empty_fleet_that_can_grow_is_ready_once_it_adopted_its_engines() -> None:
    pool = pool_of([], max_engines=5)
    starting = status.FleetFacts(adopted=False)
    snapshot = status.take_snapshot(pool, [], starting, min_replicas=1, wall=0.0)
    assert not status.ready(snapshot)
    assert status.readiness(snapshot)["reason"] == "starting"
    snapshot = status.take_snapshot(pool, [], status.FleetFacts(), min_replicas=1, wall=0.0)
    assert status.ready(snapshot)


def test_an_open_breaker_says_wait_and_when() -> None:
    pool = pool_of([], max_engines=5)
    pool.block(BlockedReason.CIRCUIT_BREAKER, "engines keep failing", 41.2)
    fleet = status.FleetFacts(breaker="open")
    body = status.status(status.take_snapshot(pool, [], fleet, min_replicas=1, wall=0.0))
    assert body["status"] == "unavailable"
    provisioning = body["provisioning"]
    assert provisioning["circuit_breaker_state"] == "open"
    assert provisioning["blocked_reason"] == "engines keep failing"
    details = provisioning["blocked_reason_details"]
    assert details["code"] == "circuit_breaker"
    assert details["recovery_eta_seconds"] in (41, 42)
    assert details["can_retry"] is False
    assert details["should_wait"] is True


def test_vpn_mode_off_reports_disabled() -> None:
    assert status.vpn_section([]) == {
        "enabled": False,
        "connected": False,
        "health": None,
        "container": None,
        "forwarded_port": None,
        "vpns": [],
    }


def test_one_vpns_facts_are_shown_as_they_are() -> None:
    section = status.vpn_section(
        [Vpn("gluetun", True, "healthy", 51413, "c0ffee", ("acestream-engine-default-19000",))]
    )
    assert section["vpns"][0]["container_id"] == "c0ffee"
    assert section["vpns"][0]["engines"] == ["acestream-engine-default-19000"]
    assert section["enabled"] is True
    assert section["connected"] is True
    assert section["health"] == "healthy"
    assert section["container"] == "gluetun"
    assert section["forwarded_port"] == 51413


def test_each_docker_endpoint_is_shown_with_its_reachability_room_and_ports() -> None:
    down = Endpoint("b", False, "cannot reach Docker", "Docker away", 1, 3, 2, "20000-20009", 1)
    up = Endpoint("a", True, None, None, 2, 3, 1, "19000-19009", 2)
    fleet = endpoints_fleet(up, down)
    body = status.status(status.take_snapshot(pool_of([], 4), [], fleet, min_replicas=1, wall=0))
    assert [e["name"] for e in body["endpoints"]] == ["a", "b"]
    assert body["endpoints"][1] == {
        "name": "b",
        "reachable": False,
        "down_reason": "cannot reach Docker",
        "blocked": "Docker away",
        "engines": 1,
        "max_engines": 3,
        "room": 2,
        "ports": "20000-20009",
        "ports_held": 1,
        "nodes": [],
    }


def test_a_swarm_endpoint_lists_each_node_with_its_engines_and_their_ports() -> None:
    on_node = NodeEngine("t1", "acestream-engine-default-19000", 19000, "ready")
    ready = NodeStatus(
        "n1", "box1", "10.0.0.5", "manager", "active", "ready", True, "ready", (on_node,)
    )
    drained = NodeStatus("n2", "box2", None, "worker", "drain", "ready", False, "drained", ())
    swarm = Endpoint("default", True, None, None, 1, 3, 2, "19000-19009", 1, (ready, drained))
    fleet = endpoints_fleet(swarm)
    body = status.status(status.take_snapshot(pool_of([], 4), [], fleet, min_replicas=1, wall=0))
    first, second = body["endpoints"][0]["nodes"]
    assert first == {
        "id": "n1",
        "hostname": "box1",
        "address": "10.0.0.5",
        "role": "manager",
        "availability": "active",
        "state": "ready",
        "reachable": True,
        "condition": "ready",
        "engines": [
            {"id": "t1", "name": "acestream-engine-default-19000", "port": 19000, "state": "ready"}
        ],
    }
    assert (second["availability"], second["condition"], second["reachable"]) == (
        "drain",
        "drained",
        False,
    )
    assert second["engines"] == []
