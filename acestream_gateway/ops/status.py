"""``/orchestrator/status`` and ``/ready``: acestream-orchestrator's field names, from a snapshot.

Users of acestream-orchestrator have dashboards and scripts that read its status, so the names
and shapes are kept (``status``, ``engines``, ``streams``, ``capacity``, ``vpn``,
``provisioning``, ``timestamp``); ``endpoints`` (each Docker endpoint) is the gateway's own. The
values are what the pool, the registry and the fleet already know: capacity is the pool's own
count (rule 1 in docs/RULES.md), the block is the pool's, the breaker state is the fleet's.
Nothing is recomputed or asked of an engine.

The overall ``status``:

- ``unavailable``: no engine is READY and provisioning is blocked, so no channel can start now;
- ``degraded``: an engine is UNHEALTHY, or provisioning is blocked by a fault (anything but a
  full fleet: Docker unreachable, the breaker, the image, the VPN);
- ``healthy``: otherwise (a fleet that is full and busy is loaded, not broken).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..engines.model import EngineState
from ..engines.pool import Capacity, ClaimState, EngineLoad, EnginePool
from ..engines.provisioning import Blocked, BlockedReason
from ..streaming.channel import Channel


class VpnFacts(Protocol):
    """What the fleet knows of one VPN container (VPN mode provides one per VPN)."""

    @property
    def name(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    @property
    def health(self) -> str | None: ...
    @property
    def forwarded_port(self) -> int | None: ...
    @property
    def container_id(self) -> str | None: ...
    @property
    def engines(self) -> tuple[str, ...]: ...


class NodeEngineFacts(Protocol):
    """An engine on a Swarm node."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def state(self) -> str: ...


class NodeFacts(Protocol):
    """What the fleet knows of one Swarm node."""

    @property
    def id(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def address(self) -> str | None: ...
    @property
    def role(self) -> str: ...
    @property
    def availability(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reachable(self) -> bool: ...
    @property
    def condition(self) -> str: ...
    @property
    def engines(self) -> Sequence[NodeEngineFacts]: ...


class EndpointFacts(Protocol):
    """What the fleet knows of one Docker endpoint (on a Swarm, of each of its nodes too)."""

    @property
    def name(self) -> str: ...
    @property
    def reachable(self) -> bool: ...
    @property
    def down_reason(self) -> str | None: ...
    @property
    def blocked(self) -> str | None: ...
    @property
    def engines(self) -> int: ...
    @property
    def max_engines(self) -> int: ...
    @property
    def room(self) -> int: ...
    @property
    def ports(self) -> str: ...
    @property
    def ports_held(self) -> int: ...
    @property
    def nodes(self) -> Sequence[NodeFacts]: ...


@dataclass(frozen=True, slots=True)
class FleetFacts:
    """What the fleet adds to the pool's view; the defaults are a fleet without a breaker or VPN."""

    breaker: str = "closed"  # closed / open / half_open
    vpns: Sequence[VpnFacts] = ()
    adopted: bool = True  # the fleet has listed its engines once since the start
    endpoints: Sequence[EndpointFacts] = ()  # each Docker endpoint (none: a fixed ENGINE_URLS)


@dataclass(frozen=True, slots=True)
class StationFacts:
    """The lineup's channels as they play: tuners in use, channels with no working source, and
    each tuned channel's current source and source failovers."""

    tuners: int = 0
    tuned: int = 0
    without_source: int = 0
    stations: Sequence[dict[str, object]] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "tuners": self.tuners,
            "tuned": self.tuned,
            "without_source": self.without_source,
            "playing": list(self.stations),
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the status is made of, taken at one moment with no ``await`` in between."""

    engines: Sequence[EngineLoad]
    capacity: Capacity
    streams_active: int
    streams_total: int
    block: Blocked | None
    block_eta_s: float | None
    has_room: bool
    fleet: FleetFacts
    max_replicas: int
    min_replicas: int
    wall: float  # time.time() of the snapshot
    players: int = 0  # TS and HLS
    players_hls: int = 0
    stations: StationFacts = StationFacts()


# Whether a client should try again now, and whether waiting is worth it, by block reason.
# (The breaker's can_retry depends on whether its pause is over: see ``_details``.)
_RETRY_WAIT = {
    BlockedReason.DOCKER_UNAVAILABLE: (True, True),
    BlockedReason.VPN_DISCONNECTED: (True, True),
    BlockedReason.NO_SWARM_NODE: (True, True),
    BlockedReason.IMAGE_UNAVAILABLE: (False, False),
    BlockedReason.CIRCUIT_BREAKER: (False, True),
    BlockedReason.MAX_CAPACITY: (False, True),
}


def overall_status(engines: Sequence[EngineLoad], block: Blocked | None) -> str:
    """``healthy``, ``degraded`` or ``unavailable``, by the rule in the module docstring."""
    states = [load.engine.state for load in engines]
    if block is not None and EngineState.READY not in states:
        return "unavailable"
    if EngineState.UNHEALTHY in states:
        return "degraded"
    if block is not None and block.reason is not BlockedReason.MAX_CAPACITY:
        return "degraded"
    return "healthy"


def ready(snapshot: Snapshot) -> bool:
    """``/ready``: the gateway can serve players. An engine is READY (it takes players: joins to
    the channels it plays, new channels where it has room), or the fleet can still grow; and the
    fleet has adopted its engines (before that it does not know what it has). A full fleet that
    plays is ready: a load balancer that took it out would also refuse joins to playing channels;
    ``can_place_now`` and the reason say that new channels would wait or be refused."""
    serving = any(load.engine.state is EngineState.READY for load in snapshot.engines)
    return snapshot.fleet.adopted and (serving or snapshot.block is None)


def engines_section(engines: Sequence[EngineLoad]) -> dict[str, int]:
    """``total`` every engine; ``running`` past its start; ``healthy`` answering (READY or
    DRAINING); ``unhealthy``; plus ``starting`` and ``draining``."""
    states = [load.engine.state for load in engines]
    return {
        "total": len(states),
        "running": sum(1 for s in states if s is not EngineState.STARTING),
        "healthy": sum(1 for s in states if s in (EngineState.READY, EngineState.DRAINING)),
        "unhealthy": states.count(EngineState.UNHEALTHY),
        "starting": states.count(EngineState.STARTING),
        "draining": states.count(EngineState.DRAINING),
    }


def capacity_section(capacity: Capacity, max_replicas: int, min_replicas: int) -> dict[str, int]:
    """The pool's count as it is (rule 1), with the fleet's limits."""
    return {
        "total": capacity.total,
        "used": capacity.used,
        "available": capacity.available,
        "max_replicas": max_replicas,
        "min_replicas": min_replicas,
        "streams": capacity.streams,
        "max_streams_per_engine": capacity.max_streams_per_engine,
    }


def vpn_section(vpns: Sequence[VpnFacts]) -> dict[str, Any]:
    """One VPN's facts as they are; with several, the first's name and port, ``connected`` when
    any is (engines can still be placed), ``health`` ``healthy`` / ``degraded`` / ``unhealthy``
    over all of them, and each one under ``vpns``."""
    if not vpns:
        return {
            "enabled": False,
            "connected": False,
            "health": None,
            "container": None,
            "forwarded_port": None,
            "vpns": [],
        }
    listed = [_vpn(v) for v in vpns]
    if len(vpns) == 1:
        health = vpns[0].health
    else:
        up = sum(1 for v in vpns if v.connected)
        health = "healthy" if up == len(vpns) else "unhealthy" if up == 0 else "degraded"
    return {
        "enabled": True,
        "connected": any(v.connected for v in vpns),
        "health": health,
        "container": vpns[0].name,
        "forwarded_port": vpns[0].forwarded_port,
        "vpns": listed,
    }


def _vpn(vpn: VpnFacts) -> dict[str, Any]:
    return {
        "container": vpn.name,
        "container_id": vpn.container_id,
        "connected": vpn.connected,
        "health": vpn.health,
        "forwarded_port": vpn.forwarded_port,
        "engines": list(vpn.engines),
    }


def endpoints_section(endpoints: Sequence[EndpointFacts]) -> list[dict[str, Any]]:
    """Each Docker endpoint: whether it answers (and why not), why it cannot start engines now,
    its engines, its share (``max_engines``) and the room left in it, its ports, and on a Swarm
    each node (none otherwise)."""
    return [
        {
            "name": e.name,
            "reachable": e.reachable,
            "down_reason": e.down_reason,
            "blocked": e.blocked,
            "engines": e.engines,
            "max_engines": e.max_engines,
            "room": e.room,
            "ports": e.ports,
            "ports_held": e.ports_held,
            "nodes": [_node(n) for n in e.nodes],
        }
        for e in endpoints
    ]


def _node(node: NodeFacts) -> dict[str, Any]:
    """A Swarm node: where it is, its role, whether it takes engines (``reachable``: ready and
    active; ``condition``: ready, drained, down ...), and the engines whose task runs on it."""
    return {
        "id": node.id,
        "hostname": node.hostname,
        "address": node.address,
        "role": node.role,
        "availability": node.availability,
        "state": node.state,
        "reachable": node.reachable,
        "condition": node.condition,
        "engines": [
            {"id": e.id, "name": e.name, "port": e.port, "state": e.state} for e in node.engines
        ],
    }


def provisioning_section(snapshot: Snapshot) -> dict[str, Any]:
    """Whether an engine can be added now and, when not, why and when to look again."""
    block = snapshot.block
    return {
        "can_provision": block is None,
        "circuit_breaker_state": snapshot.fleet.breaker,
        "blocked_reason": None if block is None else block.message,
        "blocked_reason_details": None if block is None else _details(snapshot, block),
    }


def _details(snapshot: Snapshot, block: Blocked) -> dict[str, Any]:
    can_retry, should_wait = _RETRY_WAIT[block.reason]
    eta = snapshot.block_eta_s
    if block.reason is BlockedReason.CIRCUIT_BREAKER:
        can_retry = eta is not None and eta <= 0  # half-open: one trial goes through
    elif block.reason is BlockedReason.MAX_CAPACITY:
        can_retry = snapshot.has_room  # a channel that fits on a running engine still starts
    return {
        "code": block.reason.value,
        "message": block.message,
        "recovery_eta_seconds": None if eta is None else math.ceil(eta),
        "can_retry": can_retry,
        "should_wait": should_wait,
    }


def status(snapshot: Snapshot) -> dict[str, Any]:
    """The ``/orchestrator/status`` answer."""
    return {
        "status": overall_status(snapshot.engines, snapshot.block),
        "engines": engines_section(snapshot.engines),
        "streams": {
            "active": snapshot.streams_active,
            "total": snapshot.streams_total,
            "players": snapshot.players,
            "players_hls": snapshot.players_hls,
        },
        "capacity": capacity_section(
            snapshot.capacity, snapshot.max_replicas, snapshot.min_replicas
        ),
        "vpn": vpn_section(snapshot.fleet.vpns),
        "endpoints": endpoints_section(snapshot.fleet.endpoints),
        "provisioning": provisioning_section(snapshot),
        "channels": snapshot.stations.as_json(),
        "timestamp": datetime.fromtimestamp(snapshot.wall, UTC).isoformat().replace("+00:00", "Z"),
    }


def readiness(snapshot: Snapshot) -> dict[str, Any]:
    """The ``/ready`` answer's body; 503 goes with ``ready: false``."""
    block = snapshot.block
    body: dict[str, Any] = {
        "ready": ready(snapshot),
        "engines": snapshot.capacity.total,
        "engines_used": snapshot.capacity.used,
        "can_place_now": snapshot.has_room,
        "can_provision": block is None,
    }
    if not snapshot.fleet.adopted:
        body["reason"] = "starting"
        body["detail"] = "the fleet has not listed its engines yet"
    elif block is not None:
        body["reason"] = block.reason.value
        body["detail"] = block.message
        eta = snapshot.block_eta_s
        body["recovery_eta_seconds"] = None if eta is None else math.ceil(eta)
    return body


def take_snapshot(
    pool: EnginePool,
    channels: Sequence[Channel],
    fleet: FleetFacts,
    *,
    min_replicas: int,
    wall: float,
    stations: StationFacts | None = None,
) -> Snapshot:
    """The facts of this moment, from memory; synchronous, so they are all of one moment."""
    block = pool.blocked()
    return Snapshot(
        engines=pool.snapshot(),
        capacity=pool.capacity(),
        streams_active=sum(1 for c in channels if playing(c)),
        streams_total=len(channels),
        block=block,
        block_eta_s=None if block is None else pool.provisioning.eta_s(block),
        has_room=pool.has_room(),
        fleet=fleet,
        max_replicas=pool.max_engines,
        min_replicas=min_replicas,
        wall=wall,
        players=sum(players(c) for c in channels),
        players_hls=sum(hls_players(c) for c in channels),
        stations=stations or StationFacts(),
    )


def playing(channel: Channel) -> bool:
    """The channel's engine session is playing (its claim is an active stream)."""
    claim = channel.claim
    return claim is not None and claim.state is ClaimState.ACTIVE


def hls_players(channel: Channel) -> int:
    """The channel's HLS players: clients that fetched its playlist or segments lately."""
    return channel.hls.viewers.count() if channel.hls is not None else 0


def players(channel: Channel) -> int:
    """The channel's players, TS (connected) and HLS."""
    return channel.players + hls_players(channel)
