"""What the fleet knows beyond the pool, for the status endpoint, the metrics and the tests:
the breaker, the ports, removals that failed, the VPNs, and each Docker endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engines.pool import EnginePool
from .blocks import EndpointBlocks
from .breaker import BreakerState
from .docker_backend import DockerBackend
from .swarm_backend import SwarmBackend
from .swarm_nodes import NodeStatus
from .vpns import VpnStatus


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """What the fleet side knows beyond the pool, for the status endpoint and for tests."""

    breaker: BreakerState
    breaker_eta_s: float | None
    breaker_openings: int
    ports_held: dict[int, str]
    ports_aside: list[int]
    ports_outside_range: dict[int, str]
    removal_failures: dict[str, str]
    last_error: str | None
    vpns: tuple[
        VpnStatus, ...
    ] = ()  # VPN mode: each VPN container, in GLUETUN_CONTAINER_NAME order
    endpoints: tuple[EndpointStatus, ...] = ()  # each Docker endpoint, in DOCKER_ENDPOINTS order


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One Docker endpoint, for the status: where it is, whether it answers (and why not), its
    engines, its share and the room left in it, its ports, and on a Swarm each node."""

    name: str
    url: str | None  # None: DOCKER_HOST or the local socket
    reachable: bool
    down_reason: str | None
    blocked: str | None  # why it cannot start engines now, or None
    engines: int
    max_engines: int
    room: int
    ports: str
    ports_held: int
    nodes: tuple[NodeStatus, ...] = ()  # a Swarm's nodes with their engines (none outside one)


def fleet_status(
    backends: Sequence[DockerBackend],
    pool: EnginePool,
    blocks: EndpointBlocks,
    last_error: str | None,
) -> FleetStatus:
    """The breaker and ports of the first endpoint (the only one by default), the removals that
    failed and the VPNs of all, and each endpoint."""
    first = backends[0]
    names = {e.id: e.name for e in pool.engines()}
    return FleetStatus(
        breaker=first.breaker.state,
        breaker_eta_s=first.breaker.eta_s(),
        breaker_openings=first.breaker.openings,
        ports_held=first.ports.held,
        ports_aside=first.ports.aside,
        ports_outside_range={
            p: names.get(owner, owner) for p, owner in first.ports.outside_range().items()
        },
        removal_failures={k: v for b in backends for k, v in b.removal_failures.items()},
        last_error=last_error,
        vpns=vpn_status(backends),
        endpoints=endpoint_status(backends, pool, blocks),
    )


def vpn_status(backends: Sequence[DockerBackend]) -> tuple[VpnStatus, ...]:
    """Every endpoint's VPN containers, in order (empty outside VPN mode)."""
    return tuple(s for b in backends for s in b.vpn.status())


def endpoint_status(
    backends: Sequence[DockerBackend], pool: EnginePool, blocks: EndpointBlocks
) -> tuple[EndpointStatus, ...]:
    """Each Docker endpoint: reachability, engines, room and ports (and a Swarm's nodes)."""
    engines = pool.engines()
    return tuple(
        EndpointStatus(
            name=b.name,
            url=b.endpoint.url,
            reachable=b.docker_up,
            down_reason=b.down_reason,
            blocked=blocks.blocked(b.name),
            engines=sum(1 for e in engines if e.endpoint == b.name),
            max_engines=b.admission.share,
            room=b.admission.room(),
            ports=f"{b.ports.lo}-{b.ports.hi}",
            ports_held=len(b.ports.held),
            nodes=b.node_status() if isinstance(b, SwarmBackend) else (),
        )
        for b in backends
    )
