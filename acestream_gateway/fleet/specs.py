"""Pure descriptions of engine containers: names, labels, the Docker create body, and back.

Labels are the durable record of the fleet (rule 5): everything the gateway needs to adopt an
engine after a restart is read back from them, never from the gateway's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engines.model import EngineAddress
from ..settings import Settings

LABEL_MANAGED = "acestream-gateway.managed"
LABEL_INSTANCE = "acestream-gateway.instance"
LABEL_PORT = "acestream-gateway.port"
LABEL_HOST = "acestream-gateway.host"

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
        text = self.labels.get(LABEL_PORT, "")
        return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def instance_filter(settings: Settings) -> dict[str, list[str]]:
    """Docker list filters that select exactly this gateway instance's engines."""
    return {
        "label": [
            f"{LABEL_MANAGED}=true",
            f"{LABEL_INSTANCE}={settings.gateway_instance_name}",
        ]
    }


def container_name(settings: Settings, port: int) -> str:
    return f"{settings.engine_name_prefix}-{settings.gateway_instance_name}-{port}"


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
    }


def create_body(settings: Settings, port: int) -> dict[str, Any]:
    """The Docker ``POST /containers/create`` body for an engine on ``port``.

    The engine listens on the same port inside the container as it is published on, so one
    ``{port}`` means the same in the command line, the environment and the binding. The preset
    (ENGINE_PRESET) decides whether the engine learns it from the command or the environment.
    """
    tcp = f"{port}/tcp"
    host_config: dict[str, Any] = {
        "PortBindings": {tcp: [{"HostIp": settings.engine_host_address, "HostPort": str(port)}]},
        "RestartPolicy": {"Name": "no"},
        "Init": True,
    }
    if settings.engine_network:
        host_config["NetworkMode"] = settings.engine_network
    launch = settings.engine_launch(port)
    body: dict[str, Any] = {
        "Image": settings.engine_image,
        "Env": [f"{k}={v}" for k, v in launch.environment.items()],
        "Labels": labels(settings, port),
        "ExposedPorts": {tcp: {}},
        "HostConfig": host_config,
    }
    if launch.command:
        body["Cmd"] = list(launch.command)
    return body
