"""VPN containers as the fleet sees them, and the verdicts drawn from them, free of any I/O.

In VPN mode engines join a Gluetun container's network namespace and publish nothing themselves:
the VPN container publishes their ports, so an engine's address is the VPN's binding for its port.
A namespace lives exactly as long as one run of the VPN container: when it restarts or is
recreated, engines that joined the old one keep running without a network. Each engine's labels
record the run it joined (container id and start time), so an engine is known to be stranded from
Docker's facts alone, after a gateway restart too.

A VPN counts as connected when its container runs, is healthy where it has a Docker health check,
and reports its tunnel up where its control server answers (docs/GLUETUN.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engines.model import EngineAddress
from ..settings import PortRange
from .specs import LABEL_VPN, LABEL_VPN_ID, LABEL_VPN_STARTED

_ANY_ADDRESS = ("", "0.0.0.0", "::")
TUNNEL_UP = "running"  # Gluetun's loop status of a tunnel that is up


class VpnError(Exception):
    """A VPN container that cannot carry engines as configured; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Where the host publishes one TCP port of the VPN container."""

    host_ip: str
    host_port: int


@dataclass(frozen=True, slots=True)
class VpnContainer:
    """A VPN container as Docker inspects it."""

    name: str
    id: str
    running: bool
    started_at: str
    health: str | None = None  # Docker's health status; None when it has no health check
    bindings: Mapping[int, Binding] = field(default_factory=dict)  # TCP container port -> host


@dataclass(frozen=True, slots=True)
class Tunnel:
    """What a VPN's control server said: its tunnel status and forwarded port (None: no answer,
    or no port forwarded)."""

    status: str | None = None
    forwarded_port: int | None = None


def vpn_from_inspect(name: str, info: Mapping[str, Any]) -> VpnContainer:
    """Docker's inspect answer of a VPN container as a record.

    A running container's bindings are the ones Docker made (``NetworkSettings.Ports``, host ports
    assigned); a stopped one's are the ones it asks for (``HostConfig.PortBindings``)."""
    state = _mapping(info.get("State"))
    running = bool(state.get("Running"))
    health = _mapping(state.get("Health")).get("Status")
    ports = _mapping(_mapping(info.get("NetworkSettings")).get("Ports"))
    if not running or not ports:
        ports = _mapping(_mapping(info.get("HostConfig")).get("PortBindings"))
    return VpnContainer(
        name=name,
        id=str(info.get("Id", "")),
        running=running,
        started_at=str(state.get("StartedAt", "")),
        health=str(health) if health else None,
        bindings=_tcp_bindings(ports),
    )


def _tcp_bindings(ports: Mapping[str, Any]) -> dict[int, Binding]:
    found: dict[int, Binding] = {}
    for key, hosts in ports.items():
        port, _, protocol = str(key).partition("/")
        if protocol not in ("", "tcp") or not port.isdigit() or not isinstance(hosts, list):
            continue
        usable = [b for b in (_binding(h) for h in hosts) if b is not None]
        usable.sort(key=lambda b: ":" in b.host_ip)  # an IPv4 binding first
        if usable:
            found[int(port)] = usable[0]
    return found


def _binding(host: object) -> Binding | None:
    data = _mapping(host)
    text = str(data.get("HostPort") or "")
    if not text.isdigit():
        return None  # asked for a port Docker has not assigned yet
    return Binding(str(data.get("HostIp") or ""), int(text))


def disconnected_reason(container: VpnContainer | None, tunnel: Tunnel) -> str | None:
    """Why a VPN is not connected, or None when it is (see the module docstring)."""
    if container is None:
        return "its container does not exist"
    if not container.running:
        return "its container is not running"
    if container.health not in (None, "healthy"):
        return f"its container is not healthy (Docker health check: {container.health})"
    if tunnel.status is not None and tunnel.status != TUNNEL_UP:
        return f"its control server reports the tunnel {tunnel.status}"
    return None


def split_range(ports: PortRange, count: int) -> tuple[PortRange, ...]:
    """PORT_RANGE_HOST split among ``count`` VPNs in order: consecutive shares whose sizes differ
    by one at most, the larger ones first."""
    size, extra = divmod(len(ports), count)
    shares = []
    lo = ports.lo
    for i in range(count):
        hi = lo + size + (1 if i < extra else 0) - 1
        shares.append(PortRange((lo, hi)))
        lo = hi + 1
    return tuple(shares)


def missing_ports(container: VpnContainer, share: PortRange) -> list[int]:
    """The ports of ``share`` the VPN container does not publish."""
    return [port for port in share.ports() if port not in container.bindings]


def describe_ports(ports: Sequence[int]) -> str:
    """Ports written short: ``19000-19003, 19007``."""
    runs: list[list[int]] = []
    for port in sorted(ports):
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def unpublished_message(container: VpnContainer, share: PortRange, missing: Sequence[int]) -> str:
    return (
        f"PORT_RANGE_HOST: VPN container {container.name} (GLUETUN_CONTAINER_NAME) must publish "
        f"its engines' ports {share}, but does not publish {describe_ports(missing)}"
    )


def address_behind(container: VpnContainer, port: int, fallback_host: str) -> EngineAddress | None:
    """Where the gateway calls the engine listening on ``port`` in the VPN's namespace: the VPN's
    host binding of that port (a wildcard host address means ``fallback_host``)."""
    binding = container.bindings.get(port)
    if binding is None:
        return None
    host = binding.host_ip
    if host in _ANY_ADDRESS:
        host = fallback_host if fallback_host not in _ANY_ADDRESS else "127.0.0.1"
    return EngineAddress(host, binding.host_port)


def namespace_labels(container: VpnContainer) -> dict[str, str]:
    """The labels that tie an engine to the run of the VPN container whose namespace it joins."""
    return {
        LABEL_VPN: container.name,
        LABEL_VPN_ID: container.id,
        LABEL_VPN_STARTED: container.started_at,
    }


def stranded_reason(labels: Mapping[str, str], container: VpnContainer | None) -> str | None:
    """Why an engine with these labels has no working network namespace, or None when it is in
    the current run of its VPN container."""
    if LABEL_VPN not in labels:
        return "it was made without a VPN"
    if container is None or not container.running:
        return f"its VPN container {labels[LABEL_VPN]} is not running"
    if labels.get(LABEL_VPN_ID) != container.id:
        return f"its VPN container {container.name} was recreated"
    if labels.get(LABEL_VPN_STARTED) != container.started_at:
        return f"its VPN container {container.name} restarted"
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
