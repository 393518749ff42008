"""Pure descriptions of Swarm engines: the service spec, the constraints, and which task of a
service is the engine.

On a Swarm each engine is a one-replica service. Its labels are the record (the same labels as an
engine container's, so adoption reads them back the same way); its HTTP port is published in host
mode on the node its task lands on, so the engine's address is that node's address and the port.
Swarm restarts and reschedules tasks: the engine is the service's running task, and a running task
with a new id is a new engine (the old one has left; its channels fail over).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..engines.model import EngineAddress
from ..settings import Settings
from .specs import container_name, labels


def parse_constraints(text: str) -> tuple[str, ...]:
    """``SWARM_CONSTRAINTS``: comma-separated Swarm placement constraints, blanks dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def service_spec(settings: Settings, port: int, constraints: Iterable[str] = ()) -> dict[str, Any]:
    """The Docker ``POST /services/create`` body for an engine on ``port``.

    The engine listens on ``port`` inside its container and is published on the same port, in
    host mode, on the node its task runs on (no routing mesh: the gateway calls that node)."""
    engine_labels = labels(settings, port)
    launch = settings.engine_launch(port)
    container: dict[str, Any] = {
        "Image": settings.engine_image,
        "Env": [f"{k}={v}" for k, v in launch.environment.items()],
        "Labels": engine_labels,
        "Init": True,
    }
    if launch.command:
        container["Args"] = list(launch.command)
    return {
        "Name": container_name(settings, port),
        "Labels": engine_labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Placement": {"Constraints": list(constraints)},
            "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
        },
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {
            "Ports": [
                {
                    "Protocol": "tcp",
                    "TargetPort": port,
                    "PublishedPort": port,
                    "PublishMode": "host",
                }
            ]
        },
    }


def service_prefix(settings: Settings) -> str:
    """How the names of this gateway's engine services begin (``container_name`` without the
    port)."""
    return container_name(settings, 0).removesuffix("0")


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A managed service as Swarm lists it."""

    id: str
    name: str
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task of a service: where it runs, in what state, on which published port."""

    id: str
    service_id: str
    node_id: str
    state: str  # Swarm's: new, pending, assigned, ..., running, complete, failed, shutdown ...
    desired_state: str
    published_port: int | None
    created: str = ""  # Swarm's RFC 3339 time; sorts as text

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired_state == "running"


def service_record(info: Mapping[str, Any]) -> ServiceRecord:
    spec = _mapping(info.get("Spec"))
    return ServiceRecord(
        id=str(info.get("ID", "")),
        name=str(spec.get("Name", "")),
        labels={str(k): str(v) for k, v in _mapping(spec.get("Labels")).items()},
    )


def task_record(info: Mapping[str, Any]) -> TaskRecord:
    status = _mapping(info.get("Status"))
    ports = _mapping(status.get("PortStatus")).get("Ports") or []
    published = next(
        (
            int(p["PublishedPort"])
            for p in ports
            if isinstance(p, dict) and isinstance(p.get("PublishedPort"), int)
        ),
        None,
    )
    return TaskRecord(
        id=str(info.get("ID", "")),
        service_id=str(info.get("ServiceID", "")),
        node_id=str(info.get("NodeID", "")),
        state=str(status.get("State", "")),
        desired_state=str(info.get("DesiredState", "")),
        published_port=published,
        created=str(info.get("CreatedAt", "")),
    )


@dataclass(frozen=True, slots=True)
class SwarmEngine:
    """The engine a service is right now: its running task, and where that task is reached."""

    service_id: str
    task_id: str
    node_id: str
    address: EngineAddress


def running_engines(
    tasks: Iterable[TaskRecord], addresses: Mapping[str, str]
) -> dict[str, SwarmEngine]:
    """Service id → its engine: the service's running task (the newest, should Swarm briefly
    report two) on a node whose address is known, with its published port. A service without
    such a task has no engine now (its task is starting, or being rescheduled)."""
    engines: dict[str, SwarmEngine] = {}
    newest: dict[str, str] = {}
    for task in tasks:
        addr = addresses.get(task.node_id)
        if not task.running or task.published_port is None or addr is None:
            continue
        if task.service_id in newest and newest[task.service_id] >= task.created:
            continue
        newest[task.service_id] = task.created
        address = EngineAddress(addr, task.published_port)
        engines[task.service_id] = SwarmEngine(task.service_id, task.id, task.node_id, address)
    return engines


@dataclass(frozen=True, slots=True)
class EngineChanges:
    """What the pool must do to agree with the services' running tasks."""

    gone: tuple[str, ...]  # task ids of engines that left (their task stopped or was replaced)
    new: tuple[SwarmEngine, ...]  # running tasks the pool does not know yet


def follow_tasks(known: Iterable[str], engines: Mapping[str, SwarmEngine]) -> EngineChanges:
    """Engines are tasks, not services: ``known`` task ids not running any more are gone, and a
    running task whose id is not known is a new engine, even for a service already in the pool
    (Swarm rescheduled it: the old task's engine is gone)."""
    known = set(known)
    current = {engine.task_id for engine in engines.values()}
    return EngineChanges(
        gone=tuple(sorted(known - current)),
        new=tuple(e for e in engines.values() if e.task_id not in known),
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
