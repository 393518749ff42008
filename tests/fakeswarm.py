"""A small in-memory Docker Swarm for fleet tests: engine services, their tasks and one node.

It stands in for :class:`~acestream_gateway.fleet.docker.DockerEngines`'s Swarm calls. A created
service has a task that is not running yet (``run_tasks`` starts the waiting ones, as Swarm does
once a node took them); ``reschedule`` fails a service's running task and runs a new one, as
Swarm does when the task's container dies. The node answers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from acestream_gateway.fleet.docker import ContainerEvent, DockerEngines, Filters
from acestream_gateway.fleet.swarm_specs import ServiceRecord, TaskRecord

NODE = "node-1"
NODE_ADDRESS = "127.0.0.1"


@dataclass
class FakeService:
    id: str
    spec: dict[str, Any]
    tasks: list[TaskRecord] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.spec["EndpointSpec"]["Ports"][0]["PublishedPort"])


class FakeSwarm(DockerEngines):
    """See the module docstring. ``created`` counts every service ever created."""

    def __init__(self) -> None:  # no aiodocker client at all
        self.timeout_s = 30.0
        self.services_by_id: dict[str, FakeService] = {}
        self.created = 0
        self._ids = itertools.count(1)

    async def ping(self) -> str:
        return "fake"

    async def ensure_image(self, image: str) -> None:
        return None

    async def services(self, filters: Filters) -> tuple[ServiceRecord, ...]:
        wanted = [w.split("=", 1) for w in filters.get("label", [])]
        names = filters.get("name")
        return tuple(
            ServiceRecord(s.id, s.spec["Name"], dict(s.spec["Labels"]))
            for s in self.services_by_id.values()
            if all(s.spec["Labels"].get(k) == v for k, v in wanted)
            and (names is None or any(s.spec["Name"].startswith(n) for n in names))
        )

    async def create_service(self, spec: dict[str, Any]) -> str:
        service = FakeService(f"svc{next(self._ids)}", spec)
        service.tasks.append(self._task(service, "pending"))
        self.services_by_id[service.id] = service
        self.created += 1
        return service.id

    async def remove_service(self, service_id: str) -> None:
        self.services_by_id.pop(service_id, None)

    async def tasks(self, filters: Filters) -> tuple[TaskRecord, ...]:
        ids = set(filters.get("service", []))
        return tuple(t for s in self.services_by_id.values() if s.id in ids for t in s.tasks)

    async def node_addresses(self) -> dict[str, str]:
        return {NODE: NODE_ADDRESS}

    @asynccontextmanager
    async def watch(self, filters: Filters) -> AsyncIterator[AsyncIterator[ContainerEvent]]:
        yield _Silence()

    def run_tasks(self) -> None:
        """Every waiting task runs now."""
        for service in self.services_by_id.values():
            service.tasks = [
                self._task(service, "running", t.id) if t.state == "pending" else t
                for t in service.tasks
            ]

    def reschedule(self, service_id: str, *, runs: bool = True) -> None:
        """The service's running task fails, and Swarm makes a new one: running at once, or
        (``runs=False``) pending until ``run_tasks``, as while Swarm waits its restart delay or
        finds no node for it."""
        service = self.services_by_id[service_id]
        service.tasks = [
            self._task(service, "failed", t.id, desired="shutdown") for t in service.tasks
        ]
        service.tasks.append(self._task(service, "running" if runs else "pending"))

    def _task(
        self, service: FakeService, state: str, task_id: str = "", desired: str = "running"
    ) -> TaskRecord:
        return TaskRecord(
            id=task_id or f"task{next(self._ids)}",
            service_id=service.id,
            node_id=NODE,
            state=state,
            desired_state=desired,
            published_port=service.port if state == "running" else None,
            created=f"{next(self._ids):012d}",
        )


class _Silence:
    """An event stream with nothing in it."""

    def __aiter__(self) -> _Silence:
        return self

    async def __anext__(self) -> ContainerEvent:
        await asyncio.Event().wait()
        raise StopAsyncIteration
