"""A small in-memory Docker Swarm for fleet tests: engine services, their tasks, nodes, and the
manager's service and node events.

It stands in for :class:`~acestream_gateway.fleet.docker.DockerEngines`'s Swarm calls. A created
service has a task that is not running yet (``run_tasks`` starts the waiting ones on a node, as
Swarm does once a node took them); ``reschedule`` fails a service's running task and makes a new
one, as Swarm does when the task's container dies. The first node answers on 127.0.0.1;
``set_node`` changes a node's state or availability (and nothing else: its tasks are still listed
as they were, as before Swarm acts on the change) and emits the node's ``update`` event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from acestream_gateway.fleet.docker import ContainerEvent, DockerEngines, Filters
from acestream_gateway.fleet.swarm_nodes import NodeRecord, SwarmEvent
from acestream_gateway.fleet.swarm_specs import ServiceRecord, TaskRecord

NODE = "node-1"
NODE_ADDRESS = "127.0.0.1"
# The nodes' labels unless a test says otherwise: what the fleet tests' constraint asks for.
NODE_LABELS = {"acestream": "true"}


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
        first = NodeRecord(
            NODE, "host-1", NODE_ADDRESS, "manager", "active", "ready", dict(NODE_LABELS)
        )
        self.nodes_by_id = {NODE: first}
        self.created = 0
        self._ids = itertools.count(1)
        self._watchers: list[asyncio.Queue[SwarmEvent]] = []

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
        self._emit(SwarmEvent("service", service.id, "create", spec["Name"]))
        return service.id

    async def remove_service(self, service_id: str) -> None:
        service = self.services_by_id.pop(service_id, None)
        if service is not None:
            self._emit(SwarmEvent("service", service_id, "remove", service.spec["Name"]))

    async def tasks(self, filters: Filters) -> tuple[TaskRecord, ...]:
        ids = set(filters.get("service", []))
        return tuple(t for s in self.services_by_id.values() if s.id in ids for t in s.tasks)

    async def nodes(self) -> tuple[NodeRecord, ...]:
        return tuple(self.nodes_by_id.values())

    @asynccontextmanager
    async def watch(self, filters: Filters) -> AsyncIterator[AsyncIterator[ContainerEvent]]:
        yield _Silence()

    @asynccontextmanager
    async def watch_swarm(self, filters: Filters) -> AsyncIterator[AsyncIterator[SwarmEvent]]:
        queue: asyncio.Queue[SwarmEvent] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            yield _Events(queue)
        finally:
            self._watchers.remove(queue)

    def add_node(
        self,
        node_id: str,
        address: str,
        hostname: str = "",
        labels: dict[str, str] | None = None,
    ) -> None:
        self.nodes_by_id[node_id] = NodeRecord(
            node_id,
            hostname or node_id,
            address,
            "worker",
            "active",
            "ready",
            dict(NODE_LABELS if labels is None else labels),
        )
        self._emit(SwarmEvent("node", node_id, "create", hostname or node_id))

    def set_node(
        self,
        node_id: str,
        *,
        state: str | None = None,
        availability: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """The node's ``state``, ``availability`` or ``labels`` change; its tasks are listed as
        they were."""
        node = self.nodes_by_id[node_id]
        node = dataclasses.replace(
            node,
            state=state or node.state,
            availability=availability or node.availability,
            labels=node.labels if labels is None else dict(labels),
        )
        self.nodes_by_id[node_id] = node
        self._emit(SwarmEvent("node", node_id, "update", node.hostname))

    def run_tasks(self, node: str = NODE) -> None:
        """Every waiting task runs now, on ``node``."""
        for service in self.services_by_id.values():
            service.tasks = [
                self._task(service, "running", t.id, node=node) if t.state == "pending" else t
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

    def _emit(self, event: SwarmEvent) -> None:
        for queue in self._watchers:
            queue.put_nowait(event)

    def _task(
        self,
        service: FakeService,
        state: str,
        task_id: str = "",
        desired: str = "running",
        node: str = NODE,
    ) -> TaskRecord:
        return TaskRecord(
            id=task_id or f"task{next(self._ids)}",
            service_id=service.id,
            node_id=node,
            state=state,
            desired_state=desired,
            published_port=service.port if state == "running" else None,
            created=f"{next(self._ids):012d}",
        )


class _Events:
    """The manager's service and node events, as they are emitted."""

    def __init__(self, queue: asyncio.Queue[SwarmEvent]) -> None:
        self._queue = queue

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> SwarmEvent:
        return await self._queue.get()


class _Silence:
    """An event stream with nothing in it."""

    def __aiter__(self) -> _Silence:
        return self

    async def __anext__(self) -> ContainerEvent:
        await asyncio.Event().wait()
        raise StopAsyncIteration
