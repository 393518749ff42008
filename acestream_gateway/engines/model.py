"""What the gateway knows of one engine and of one channel request, free of any I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """Where an engine's HTTP API answers: a host of its Docker endpoint and a port, never assumed
    to be 127.0.0.1."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class EngineState(enum.Enum):
    """Where an engine is in its life; only ``READY`` engines take new streams."""

    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


@dataclass(slots=True)
class Engine:
    """One engine container the gateway manages; ``id`` is the container id (on a Swarm, the
    task's id, and ``node`` the id of the node the task runs on)."""

    id: str
    name: str
    address: EngineAddress
    state: EngineState = EngineState.STARTING
    endpoint: str = "local"
    created_at: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    node: str = ""


class InputKind(enum.Enum):
    """The ways a player names what to play, as the engine's ``getstream`` takes them."""

    CONTENT_ID = "id"
    INFOHASH = "infohash"
    URL = "url"
    MAGNET = "magnet"


@dataclass(frozen=True, slots=True)
class ContentRef:
    """A channel as a player asked for it; equal refs share one engine session."""

    kind: InputKind
    value: str
    file_indexes: str = "0"

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.value}:{self.file_indexes}"

    def engine_params(self) -> dict[str, str]:
        return {self.kind.value: self.value, "file_indexes": self.file_indexes}
