"""The VPN containers of VPN mode: what the fleet last saw of each, and where engines go.

The reconciler looks at every VPN container (Docker) and its control server (Gluetun) at the start
of each pass, and at once when Docker reports an event of one of them; the verdicts are the pure
functions of ``vpn.py`` and ``placement.py``; which engine has a VPN's forwarded port is
``vpn_forwarding.py``'s, and the VPN containers' events are followed by ``vpn_events.py``.
PORT_RANGE_HOST is split among the VPNs in the order of GLUETUN_CONTAINER_NAME and each VPN must
publish its share; engines take their port from the one allocator every mode uses, within the
share of the VPN they go behind.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..engines.model import EngineAddress
from ..engines.pool import EnginePool
from ..logs import get_logger
from ..settings import PortRange, Settings
from .placement import Share, choose_share
from .ports import PortAllocator
from .specs import LABEL_VPN, Namespace
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
from .vpn_forwarding import Forwarding

log = get_logger(__name__)


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
        self.forwarding = Forwarding(
            settings=settings,
            pool=pool,
            tunnels=self.tunnels,
            shares=self.shares,
            behind=self.behind,
        )

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
        """The ready engines to replace so that each VPN's forwarded port reaches an engine
        (``vpn_forwarding.Forwarding.plan``)."""
        return self.forwarding.plan()

    # --- placing new engines -------------------------------------------------------------------

    def place(self, ports: PortAllocator, starting: Counter[str]) -> tuple[int, Namespace] | None:
        """Reserve a port for a new engine behind the VPN that should take it (fewest engines
        first), with the namespace it joins; None when no VPN can take one now."""
        behind = self.behind()
        avoid = {name: self.forwarding.avoid(name) for name in self.names}
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
        p2p = self.forwarding.p2p(name, port)
        return port, Namespace(container.id, namespace_labels(container), p2p)

    def started(self, namespace: Namespace | None) -> None:
        """A start placed with ``namespace`` is over (the engine is in the pool, or failed)."""
        self.forwarding.started(namespace)

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
