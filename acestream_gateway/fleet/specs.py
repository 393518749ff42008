"""Pure descriptions of engine containers: names, labels, the Docker create body, and back.

Labels are the durable record of the fleet (rule 5): everything the gateway needs to adopt an
engine after a restart is read back from them, never from the gateway's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..engines.model import EngineAddress
from ..settings import Settings

LABEL_MANAGED = "acestream-gateway.managed"
LABEL_INSTANCE = "acestream-gateway.instance"
LABEL_PORT = "acestream-gateway.port"
LABEL_HOST = "acestream-gateway.host"
# The DOCKER_ENDPOINTS endpoint an engine was made on (absent on the one default endpoint): two
# endpoints on one daemon, or two gateways, never adopt each other's engines.
LABEL_ENDPOINT = "acestream-gateway.endpoint"
# VPN mode: the VPN container whose namespace the engine joined (name, id and start time of that
# run of it), and the engine's P2P port.
LABEL_VPN = "acestream-gateway.vpn"
LABEL_VPN_ID = "acestream-gateway.vpn-id"
LABEL_VPN_STARTED = "acestream-gateway.vpn-started"
LABEL_P2P_PORT = "acestream-gateway.p2p-port"

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A managed container as Docker lists it."""

    id: str
    name: str
    state: str  # Docker's: created, running, paused, restarting, removing, exited, dead
    labels: dict[str, str]
    created: float = 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def port(self) -> int | None:
        """The engine's port from its label, or None when the label is missing or broken."""
        return port_label(self.labels, LABEL_PORT)


def port_label(labels: Mapping[str, str], name: str) -> int | None:
    """A port from a label, or None when the label is missing or broken."""
    text = labels.get(name, "")
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


@dataclass(frozen=True, slots=True)
class Namespace:
    """Where a new engine goes in VPN mode: the VPN container's id (for ``container:<id>``), the
    labels that tie the engine to that run of it, and the engine's P2P port."""

    container_id: str
    labels: Mapping[str, str]
    p2p_port: int


def instance_filter(settings: Settings) -> dict[str, list[str]]:
    """Docker list filters that select exactly this gateway instance's engines."""
    wanted = [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={settings.gateway_instance_name}"]
    if settings.endpoint_name is not None:
        wanted.append(f"{LABEL_ENDPOINT}={settings.endpoint_name}")
    return {"label": wanted}


def container_name(settings: Settings, port: int) -> str:
    """``prefix-instance-port``, with the endpoint's name before the port on a DOCKER_ENDPOINTS
    endpoint (two endpoints may share a daemon and a port range)."""
    endpoint = "" if settings.endpoint_name is None else f"{settings.endpoint_name}-"
    return f"{settings.engine_name_prefix}-{settings.gateway_instance_name}-{endpoint}{port}"


def engine_address(settings: Settings, port: int) -> EngineAddress:
    """Where the gateway calls an engine published on ``port``."""
    host = settings.engine_host_address
    return EngineAddress(_ANY_ADDRESS.get(host, host), port)


def labels(settings: Settings, port: int) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: settings.gateway_instance_name,
        LABEL_PORT: str(port),
        LABEL_HOST: settings.engine_host_address,
    } | ({} if settings.endpoint_name is None else {LABEL_ENDPOINT: settings.endpoint_name})


def create_body(
    settings: Settings, port: int, namespace: Namespace | None = None
) -> dict[str, Any]:
    """The Docker ``POST /containers/create`` body for an engine on ``port``.

    The engine listens on the same port inside the container as it is published on, so one
    ``{port}`` means the same in the command line, the environment and the binding. The preset
    (ENGINE_PRESET) decides whether the engine learns it from the command or the environment.

    With a ``namespace`` (VPN mode) the engine joins the VPN container's network namespace and
    publishes nothing: the VPN container publishes ``port``. Docker refuses port options with
    ``container:`` network mode, so there are none.
    """
    tcp = f"{port}/tcp"
    host_config: dict[str, Any] = {"RestartPolicy": {"Name": "no"}, "Init": True}
    engine_labels = labels(settings, port)
    if namespace is None:
        host_config["PortBindings"] = {
            tcp: [{"HostIp": settings.engine_host_address, "HostPort": str(port)}]
        }
        if settings.engine_network:
            host_config["NetworkMode"] = settings.engine_network
        launch = settings.engine_launch(port)
    else:
        host_config["NetworkMode"] = f"container:{namespace.container_id}"
        engine_labels |= {**namespace.labels, LABEL_P2P_PORT: str(namespace.p2p_port)}
        launch = settings.engine_launch(port, namespace.p2p_port)
    body: dict[str, Any] = {
        "Image": settings.engine_image,
        "Env": [f"{k}={v}" for k, v in launch.environment.items()],
        "Labels": engine_labels,
        "HostConfig": host_config,
    }
    if namespace is None:
        body["ExposedPorts"] = {tcp: {}}
    if launch.command:
        body["Cmd"] = list(launch.command)
    return body
