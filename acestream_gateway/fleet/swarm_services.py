"""A Docker Swarm's engine services, shown to the provisioner as if they were containers.

The provisioner and its admission point start engines by creating containers (``run``), finding a
leftover of the same name (``find``) and removing it (``remove``). On a Swarm each of those is the
engine's one-replica service (``swarm_specs.py``), so every start still goes through the one
admission point (slot, port, breaker); the port is held under the service's id for the service's
life. Which task of the service is the engine is the Swarm backend's business.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..settings import Settings
from .docker import ContainerEvent, DockerEngines, Filters
from .specs import LABEL_PORT, ContainerRecord, port_label
from .swarm_nodes import NodeRecord, SwarmEvent
from .swarm_specs import ServiceRecord, TaskRecord, parse_constraints, service_spec


class ServicesAsContainers(DockerEngines):
    """Engine services through the Docker client of a Swarm manager; see the module docstring."""

    def __init__(self, docker: DockerEngines, settings: Settings) -> None:  # no client of its own
        self._inner = docker
        self._settings = settings
        self._constraints = parse_constraints(settings.swarm_constraints)
        self.timeout_s = docker.timeout_s

    async def ping(self) -> str:
        return await self._inner.ping()

    async def ensure_image(self, image: str) -> None:
        await self._inner.ensure_image(image)

    async def run(self, name: str, body: dict[str, Any]) -> ContainerRecord:
        """Create the engine's service for the port the container body was made for."""
        port = port_label(body.get("Labels", {}), LABEL_PORT)
        if port is None:
            raise ValueError(f"an engine body without a port label: {name}")
        spec = service_spec(self._settings, port, self._constraints)
        service_id = await self._inner.create_service(spec)
        return ContainerRecord(service_id, name, "running", dict(spec["Labels"]), time.time())

    async def list(self, filters: Filters) -> list[ContainerRecord]:
        return [_record(s) for s in await self._inner.services(filters)]

    async def find(self, name: str) -> ContainerRecord | None:
        found = await self._inner.services({"name": [name]})
        return next((_record(s) for s in found if s.name == name), None)

    async def inspect(self, name: str) -> dict[str, Any] | None:
        return None  # no container of a service is ever inspected by name

    async def remove(self, container_id: str) -> None:
        await self._inner.remove_service(container_id)

    @asynccontextmanager
    async def watch(self, filters: Filters) -> AsyncIterator[AsyncIterator[ContainerEvent]]:
        """The events of the services' task containers (they carry the engines' labels)."""
        async with self._inner.watch(filters) as events:
            yield events

    async def services(self, filters: Filters) -> tuple[ServiceRecord, ...]:
        return await self._inner.services(filters)

    async def create_service(self, spec: dict[str, Any]) -> str:
        return await self._inner.create_service(spec)

    async def remove_service(self, service_id: str) -> None:
        await self._inner.remove_service(service_id)

    async def tasks(self, filters: Filters) -> tuple[TaskRecord, ...]:
        return await self._inner.tasks(filters)

    async def nodes(self) -> tuple[NodeRecord, ...]:
        return await self._inner.nodes()

    @asynccontextmanager
    async def watch_swarm(self, filters: Filters) -> AsyncIterator[AsyncIterator[SwarmEvent]]:
        async with self._inner.watch_swarm(filters) as events:
            yield events


def _record(service: ServiceRecord) -> ContainerRecord:
    return ContainerRecord(service.id, service.name, "running", dict(service.labels))
