"""The VPN containers of VPN mode: what the fleet last saw of each, and where engines go.

The reconciler looks at every VPN container (Docker) and its control server (Gluetun) at the start
of each pass, and at once when Docker reports an event of one of them; the verdicts are the pure
functions of ``vpn.py`` and ``placement.py``. PORT_RANGE_HOST is split among the VPNs in the order
of GLUETUN_CONTAINER_NAME and each VPN must publish its share; engines take their port from the
one allocator every mode uses, within the share of the VPN they go behind.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..engines.model import EngineAddress, EngineState
from ..engines.pool import EngineLoad, EnginePool
from ..logs import get_logger
from ..settings import PortRange, Settings
from .docker import ContainerEvent, Filters
from .events import EventFollower, EventSource
from .placement import (
    P2pEngine,
    Share,
    choose_share,
    plan_forwarding,
    ports_to_avoid,
    usable_forwarded_port,
)
from .ports import PortAllocator
from .specs import LABEL_P2P_PORT, LABEL_PORT, LABEL_VPN, Namespace, port_label
from .vpn import (
    Tunnel,
    VpnContainer,
    VpnError,
    address_behind,
    disconnected_reason,
    missing_ports,
    namespace_labels,
    split_range,
    stranded_reason,
    unpublished_message,
    vpn_from_inspect,
)

log = get_logger(__name__)

VPN_ACTIONS = ("start", "die", "destroy", "health_status")
_HOLDING_STATES = (EngineState.READY, EngineState.STARTING)  # engines that may hold a P2P port


class Inspector(Protocol):
    """Where VPN containers are looked at (``DockerEngines``)."""

    async def inspect(self, name: str) -> dict[str, Any] | None: ...


class ControlServers(Protocol):
    """Where tunnels are asked about (``GluetunClient``)."""

    async def tunnel(self, base_url: str) -> Tunnel: ...


@dataclass(frozen=True, slots=True)
class VpnStatus:
    """One VPN container's facts, for the status endpoint and the logs."""

    name: str
    container_id: str | None
    running: bool
    health: str | None  # Docker's health status; None without a health check
    tunnel: str | None  # the control server's tunnel status; None when it did not answer
    connected: bool
    problem: str | None  # why no engine can go behind it now; None when one can
    forwarded_port: int | None
    ports: str  # its share of PORT_RANGE_HOST
    engines: tuple[str, ...]  # names of the engines behind it


class Vpns:
    """The VPN containers engines run behind; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: Inspector,
        gluetun: ControlServers,
        pool: EnginePool,
    ) -> None:
        self._settings = settings
        self._docker = docker
        self._gluetun = gluetun
        self._pool = pool
        names = settings.gluetun_container_name
        self.names = names
        self.shares: dict[str, PortRange] = dict(
            zip(names, split_range(settings.port_range_host, len(names)), strict=True)
        )
        self._urls = dict(zip(names, settings.gluetun_api_url, strict=False))
        self.containers: dict[str, VpnContainer | None] = dict.fromkeys(names)
        self.tunnels: dict[str, Tunnel] = {name: Tunnel() for name in names}
        self._unpublished: dict[str, str] = {}
        self._said: dict[str, str | None] = {}  # the last reason logged per VPN
        self._forwarded_said: dict[str, int | None] = {}
        self.forwarding_to: dict[str, int] = {}  # VPN -> forwarded port a start is taking
        self.give_forwarded: set[str] = set()  # VPNs whose next engine gets the forwarded port

    # --- looking -------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Look at every VPN container and ask its control server, all at once.

        Raises :class:`~.docker.FleetError` when Docker cannot be asked: nothing is decided on a
        guess."""
        await asyncio.gather(*(self._refresh(name) for name in self.names))

    async def _refresh(self, name: str) -> None:
        info = await self._docker.inspect(name)
        container = None if info is None else vpn_from_inspect(name, info)
        before = self.containers[name]
        self.containers[name] = container
        if container is not None and _new_run(before, container):
            self._check_share(container)
        url = self.control_url(name)
        running = container is not None and container.running
        self.tunnels[name] = await self._gluetun.tunnel(url) if url and running else Tunnel()
        self._log_changes(name)

    def control_url(self, name: str) -> str | None:
        """GLUETUN_API_URL's entry for this VPN, else its published control port."""
        if name in self._urls:
            return self._urls[name]
        container = self.containers.get(name)
        if container is None:
            return None
        address = address_behind(
            container, self._settings.gluetun_control_port, self._settings.engine_host_address
        )
        return None if address is None else address.base_url

    def _check_share(self, container: VpnContainer) -> None:
        share = self.shares[container.name]
        missing = missing_ports(container, share)
        if missing:
            message = unpublished_message(container, share, missing)
            self._unpublished[container.name] = message
            log.error("vpn_ports_unpublished", vpn=container.name, reason=message)
        else:
            self._unpublished.pop(container.name, None)

    def check_published(self) -> None:
        """Raise :class:`VpnError` when a VPN container does not publish its share."""
        for message in self._unpublished.values():
            raise VpnError(message)

    def _log_changes(self, name: str) -> None:
        reason = self.problem(name)
        if name not in self._said or self._said[name] != reason:
            if reason is None:
                log.info("vpn_connected", vpn=name, ports=str(self.shares[name]))
            else:
                log.warning("vpn_disconnected", vpn=name, reason=reason)
            self._said[name] = reason
        forwarded = self.tunnels[name].forwarded_port
        if self._forwarded_said.get(name) != forwarded and forwarded is not None:
            log.info("vpn_forwarded_port", vpn=name, port=forwarded)
        self._forwarded_said[name] = forwarded

    # --- verdicts ------------------------------------------------------------------------------

    def problem(self, name: str) -> str | None:
        """Why no engine can go behind this VPN now, or None."""
        reason = disconnected_reason(self.containers.get(name), self.tunnels[name])
        return reason or self._unpublished.get(name)

    def stranded(self, labels: Mapping[str, str]) -> str | None:
        """Why an engine with these labels has no working namespace, or None."""
        name = labels.get(LABEL_VPN)
        if name is not None and name not in self.shares:
            return f"its VPN container {name} is no longer in GLUETUN_CONTAINER_NAME"
        return stranded_reason(labels, self.containers.get(name) if name else None)

    def address(self, labels: Mapping[str, str], port: int) -> EngineAddress | None:
        """The engine's address: its VPN container's binding of its port."""
        container = self.containers.get(labels.get(LABEL_VPN, ""))
        if container is None:
            return None
        return address_behind(container, port, self._settings.engine_host_address)

    def forwarded(self, name: str) -> int | None:
        """The forwarded port an engine behind this VPN may take as its P2P port."""
        port = self.tunnels[name].forwarded_port
        return usable_forwarded_port(port, self._settings.port_range_host)

    def behind(self) -> dict[str, list[str]]:
        """Engine ids in the pool per VPN."""
        found: dict[str, list[str]] = {name: [] for name in self.names}
        for engine in self._pool.engines():
            name = engine.labels.get(LABEL_VPN)
            if name in found:
                found[name].append(engine.id)
        return found

    def blocked_message(self, ports: PortAllocator) -> str | None:
        """Why provisioning is blocked by VPNs: none is connected, or every connected one's share
        is full while another is down (its share is what is missing). None when not blocked."""
        problems = {name: self.problem(name) for name in self.names}
        down = {name: why for name, why in problems.items() if why is not None}
        if not down:
            return None
        said = "; ".join(f"{name}: {why}" for name, why in down.items())
        up = [name for name in self.names if name not in down]
        if not up:
            return f"no VPN is connected, so no engine can be started ({said})"
        if all(ports.free(self.shares[name].ports()) == 0 for name in up):
            return f"the connected VPNs' ports are all in use and the others are down ({said})"
        return None

    def plan_forwarding(self) -> list[str]:
        """Decide per VPN which engine has its forwarded port (``placement.plan_forwarding``);
        the ready engines to replace for it."""
        loads = {x.engine.id: x for x in self._pool.snapshot()}
        retire: list[str] = []
        for name, ids in self.behind().items():
            alive = [loads[i] for i in ids if loads[i].engine.state in _HOLDING_STATES]
            plan = plan_forwarding(
                (self._p2p_engine(load) for load in alive),
                self.forwarded(name),
                starting_with_it=name in self.forwarding_to,
            )
            if plan.give_next:
                self.give_forwarded.add(name)
            else:
                self.give_forwarded.discard(name)
            retire += [i for i in plan.retire if loads[i].engine.state is EngineState.READY]
        return retire

    def _p2p_engine(self, load: EngineLoad) -> P2pEngine:
        engine = load.engine
        port = port_label(engine.labels, LABEL_PORT) or 0
        return P2pEngine(
            id=engine.id,
            p2p_port=port_label(engine.labels, LABEL_P2P_PORT),
            own_p2p_port=self._settings.p2p_port(port),
            idle=engine.state is EngineState.READY and not load.streams,
            created_at=engine.created_at,
        )

    # --- placing new engines -------------------------------------------------------------------

    def place(self, ports: PortAllocator, starting: Counter[str]) -> tuple[int, Namespace] | None:
        """Reserve a port for a new engine behind the VPN that should take it (fewest engines
        first), with the namespace it joins; None when no VPN can take one now."""
        behind = self.behind()
        avoid = {name: self._avoid(name) for name in self.names}
        shares = [
            Share(
                name,
                usable=self.problem(name) is None,
                engines=len(behind[name]) + starting[name],
                free=ports.free(self.shares[name].ports(), avoid[name]),
            )
            for name in self.names
        ]
        name = choose_share(shares)
        container = self.containers.get(name or "")
        if name is None or container is None:
            return None
        port = ports.reserve("starting", avoid[name], within=self.shares[name].ports())
        return port, Namespace(container.id, namespace_labels(container), self._p2p(name, port))

    def _avoid(self, name: str) -> set[int]:
        share = self.shares[name]
        own = {port: self._settings.p2p_port(port) for port in share.ports()}
        return ports_to_avoid(share, self.forwarded(name), own)

    def _p2p(self, name: str, port: int) -> int:
        forwarded = self.forwarded(name)
        if forwarded is not None and name in self.give_forwarded and name not in self.forwarding_to:
            self.forwarding_to[name] = forwarded
            self.give_forwarded.discard(name)
            return forwarded
        return self._settings.p2p_port(port)

    def started(self, namespace: Namespace | None) -> None:
        """A start placed with ``namespace`` is over (the engine is in the pool, or failed)."""
        if namespace is not None:
            name = namespace.labels.get(LABEL_VPN, "")
            if self.forwarding_to.get(name) == namespace.p2p_port:
                del self.forwarding_to[name]

    # --- status --------------------------------------------------------------------------------

    def status(self) -> tuple[VpnStatus, ...]:
        behind = self.behind()
        names = {e.id: e.name for e in self._pool.engines()}
        return tuple(self._status(name, [names[i] for i in behind[name]]) for name in self.names)

    def _status(self, name: str, engines: list[str]) -> VpnStatus:
        container = self.containers.get(name)
        tunnel = self.tunnels[name]
        return VpnStatus(
            name=name,
            container_id=None if container is None else container.id,
            running=container is not None and container.running,
            health=None if container is None else container.health,
            tunnel=tunnel.status,
            connected=disconnected_reason(container, tunnel) is None,
            problem=self.problem(name),
            forwarded_port=tunnel.forwarded_port,
            ports=str(self.shares[name]),
            engines=tuple(sorted(engines)),
        )


def _new_run(before: VpnContainer | None, now: VpnContainer) -> bool:
    return before is None or (before.id, before.started_at) != (now.id, now.started_at)


def vpn_event_filter(names: tuple[str, ...]) -> Filters:
    """Docker event filters for the VPN containers' starts, deaths, removals and health."""
    return {"type": ["container"], "container": list(names), "event": list(VPN_ACTIONS)}


class VpnEventFollower(EventFollower):
    """Follows the VPN containers' events: each wakes the reconciler, which looks again at once
    (a restarted VPN strands the engines in its old namespace)."""

    def __init__(self, *, source: EventSource, names: tuple[str, ...], wake: Callable[[], None]):
        super().__init__(source=source, fleet=_Waker(wake), filters=vpn_event_filter(names))
        self._wake = wake

    def apply(self, event: ContainerEvent) -> None:
        log.info("vpn_container_event", vpn=event.name, action=event.action, health=event.health)
        self._wake()


class _Waker:
    """The follower's fleet hooks for VPN containers: all of them mean "look again". Docker's
    reachability is the engine follower's to report."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def relist(self) -> None:
        self._wake()

    def container_stopped(self, container_id: str, action: str) -> None:
        self._wake()

    def container_destroyed(self, container_id: str) -> None:
        self._wake()

    def container_unhealthy(self, container_id: str) -> None:
        self._wake()

    def docker_reachable(self, reachable: bool, reason: str = "", retry_in_s: float = 0) -> None:
        return None
