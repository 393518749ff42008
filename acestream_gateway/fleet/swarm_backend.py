"""The Swarm backend (FLEET_BACKEND=swarm): engines as one-replica services on a Docker Swarm.

It is the Docker backend with services in place of containers (``swarm_services.py``): starts go
through the same provisioner and admission point, and each service holds its port for its life.
What differs is what an engine is: Swarm restarts and reschedules a service's task, so the engine
is the service's running task (its id is the engine's id), reached at the address of the node it
runs on and its published port. A running task the pool does not know is a new engine, probed
until ready; an engine whose task stopped or was replaced leaves the pool (its channels fail
over). Services are adopted by their labels, so a restarted gateway takes its services back and
makes no duplicate. A service without a running task (just created, found at adoption, or whose
task is being rescheduled) stands in the pool as a starting engine, so the plan starts no other
one meanwhile; if no task runs within ENGINE_STARTUP_TIMEOUT_S it is removed. While no node can
take an engine (``swarm_placement.py``: all down, drained or paused, or none meets the
constraints) no engine is started, provisioning is blocked (``no_swarm_node``), and the services
already made wait for a node instead of timing out.

The nodes decide too: a task on a node that is not ready, or is drained, is no engine, even while
Swarm still lists it as running (``swarm_nodes.py``: Swarm notices a lost node after its
heartbeat, and reschedules only after that), so its channels fail over at once. A task
container's death (Docker's container event), a node's event or one of the services' asks for a
pass at once, and the tasks are looked at every second (``swarm_follow.py``): a task killed on
another node than the manager's shows in no event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..engines.model import Engine, EngineAddress
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..tasks import Supervisor
from .docker import UNREACHABLE, DockerEngines, FleetError
from .docker_backend import DockerBackend
from .provisioner import Provisioned
from .specs import (
    LABEL_ENDPOINT,
    LABEL_PORT,
    ContainerRecord,
    instance_filter,
    port_label,
)
from .swarm_follow import SwarmFollower
from .swarm_nodes import NodeRecord, NodeStatus, engine_addresses, leaving_reason, node_status
from .swarm_placement import no_taker_message
from .swarm_services import ServicesAsContainers
from .swarm_specs import (
    ServiceRecord,
    SwarmEngine,
    follow_tasks,
    parse_constraints,
    running_engines,
    service_prefix,
)

log = get_logger(__name__)


class SwarmBackend(DockerBackend):
    """A Swarm's engine services, kept in the pool as their running tasks; see the module
    docstring."""

    def __init__(self, *, docker: DockerEngines, wake: Callable[[], None], **rest: Any) -> None:
        services = ServicesAsContainers(docker, rest["settings"])
        super().__init__(docker=services, wake=wake, **rest)
        self._services = services
        self._wake = wake
        self._service_of: dict[str, str] = {}  # engine (task) id -> its service's id
        self._waiting = True  # a service of ours has no running task in the pool
        self.nodes: tuple[NodeRecord, ...] = ()  # as the latest pass found them
        self._constraints = parse_constraints(self._settings.swarm_constraints)
        self.no_node: str | None = None  # why no node can take a new engine now (swarm_placement)
        self.swarm = SwarmFollower(
            source=services,
            wake=wake,
            waiting=lambda: self._waiting,
            tasks_gone=self._tasks_gone,
            service_prefix=service_prefix(self._settings),
        )

    def spawn_followers(self, tasks: Supervisor) -> None:
        """Follow the task containers' events, the services' and nodes' events, and the tasks
        while one is awaited."""
        super().spawn_followers(tasks)
        tasks.spawn_loop(self.swarm.follow_events, name="swarm events")
        tasks.spawn_loop(self.swarm.poll_tasks, name="swarm tasks")

    def node_status(self) -> tuple[NodeStatus, ...]:
        """Every node of the Swarm with the engines on it, as the latest pass found them."""
        return node_status(self.nodes, self.engines())

    async def sync(self) -> None:
        """List the services and their tasks, and make the pool agree with the running tasks."""
        listed = await self._services.services(instance_filter(self._settings))
        ours = [s for s in listed if s.labels.get(LABEL_ENDPOINT) == self._settings.endpoint_name]
        kept = [s for s in ours if await self._held(s)]
        by_id = {s.id: s for s in kept}
        tasks = await self._services.tasks({"service": [s.id for s in kept]}) if kept else ()
        self.nodes = await self._services.nodes()
        self._publish_takers()
        engines = running_engines(tasks, engine_addresses(self.nodes))
        tasks_known = [e.id for e in self.engines() if e.id not in by_id]
        changes = follow_tasks(tasks_known, engines)
        nodes = {n.id: n for n in self.nodes}
        for task_id in changes.gone:
            known = self._pool.get(task_id)
            self._drop(task_id, leaving_reason(known.node if known else None, nodes))
            self._service_of.pop(task_id, None)
        for task in changes.new:
            self._add(by_id[task.service_id], task)
        await self._stand_in(by_id, engines)
        self._waiting = len(engines) < len(by_id)
        for holder in self.admission.held:
            if holder not in by_id:  # its service is gone: its slot and port are free
                self.admission.gone(holder)

    def _publish_takers(self) -> None:
        """Block provisioning (``no_swarm_node``) while no node can take a new engine."""
        self.no_node = no_taker_message(self.nodes, self._constraints)
        if self.no_node is None:
            self._blocks.unblock(BlockedReason.NO_SWARM_NODE)
        else:
            eta = self._settings.health_check_interval_s
            self._blocks.block(BlockedReason.NO_SWARM_NODE, self.no_node, eta)

    async def provision(self, wanted: int) -> Provisioned:
        """Start up to ``wanted`` engines; none while no node can take one (its service would
        only wait)."""
        if self.no_node is not None:
            return Provisioned()
        return await super().provision(wanted)

    async def _tasks_gone(self) -> bool:
        """Whether a task the pool holds as an engine no longer runs (killed on a node whose
        container events the manager does not send); ``swarm_follow.py`` asks every second."""
        known = {e.id for e in self.engines() if e.id in self._service_of}
        if not known:
            return False
        services = sorted({self._service_of[task_id] for task_id in known})
        running = {t.id for t in await self._services.tasks({"service": services}) if t.running}
        return not known <= running

    async def _stand_in(
        self, services: dict[str, ServiceRecord], engines: Mapping[str, SwarmEngine]
    ) -> None:
        """A service of ours without a running task stands in the pool as STARTING under its
        id, so the plan starts no other engine meanwhile: one just created, one found at
        adoption, one whose task stopped and is being rescheduled. It is timed from when it was
        first seen so, and removed once ENGINE_STARTUP_TIMEOUT_S passed with no task running
        (:meth:`_never_ran`). Once its task runs, the engine takes its place.

        While no node can take an engine, such services wait for one outside the pool: a
        player is not kept waiting for a task that cannot run (the pool refuses at once, with
        the ``no_swarm_node`` block), no engine is started in their place meanwhile
        (:meth:`provision` starts none), and their start says nothing about engines. They
        stand in again, timed afresh, once a node can take them."""
        now = time.time()
        for waiting in self._placeholders():
            if waiting.id in engines or waiting.id not in services:
                self._pool.remove(waiting.id)
            elif self.no_node is not None:
                self._pool.remove(waiting.id)
                self.provisioner.attempt_withdrawn(waiting.id)
            elif now - waiting.created_at > self._settings.engine_startup_timeout_s:
                await self._never_ran(waiting)
                services.pop(waiting.id, None)
        if self.no_node is not None:
            return
        for service in services.values():
            if service.id not in engines and self._pool.get(service.id) is None:
                self._pool.add(self._placeholder(service.id, service.name, service.labels, now))

    async def _never_ran(self, waiting: Engine) -> None:
        """No task of a service ran within ENGINE_STARTUP_TIMEOUT_S of its standing in (no node
        meets its constraints, or none can pull the image): removed, and a failed start for the
        breaker when the gateway's provisioner made it (not one found at adoption or
        rescheduled)."""
        reason = f"engine {waiting.name}: no task ran within the startup timeout"
        log.warning("engine_task_never_ran", engine=waiting.name)
        self.provisioner.attempt_done(waiting.id, ok=False, reason=reason)
        await self.remove_container(waiting.id, waiting.name, "its task never ran")

    async def _held(self, service: ServiceRecord) -> bool:
        """The service's port held under its id; a service without a usable port is removed."""
        port = port_label(service.labels, LABEL_PORT)
        if port is not None and self.admission.hold(service.id, port):
            return True
        log.warning("engine_unadoptable", engine=service.name, port=port)
        await self.remove_container(service.id, service.name, "unadoptable")
        return False

    def _add(self, service: ServiceRecord, task: SwarmEngine) -> None:
        engine = Engine(
            id=task.task_id,
            name=service.name,
            address=task.address,
            endpoint=self.name,
            created_at=time.time(),
            labels=dict(service.labels),
            node=task.node_id,
        )
        self._service_of[task.task_id] = service.id
        self._pool.add(engine)
        log.info("engine_task_running", engine=service.name, task=task.task_id, node=task.node_id)
        self._probes.probe(engine)

    # --- the Docker backend's hooks, for services and tasks ------------------------------------

    def _placeholders(self) -> list[Engine]:
        return [e for e in self.engines() if e.id not in self._service_of]

    def _register(self, record: ContainerRecord, port: int) -> None:
        """A service the provisioner created: in the pool as STARTING under the service's id (so
        the plan counts it) until a pass finds its running task, the engine, which takes its
        place."""
        self._pool.add(self._placeholder(record.id, record.name, record.labels, time.time()))
        self._waiting = True
        self._wake()

    def _placeholder(
        self, service_id: str, name: str, labels: Mapping[str, str], since: float
    ) -> Engine:
        """A service with no running task, as a STARTING engine under the service's id: never
        selected nor probed (it has no address yet), timed from ``since``."""
        port = port_label(labels, LABEL_PORT) or 0
        return Engine(
            id=service_id,
            name=name,
            address=EngineAddress("0.0.0.0", port),
            endpoint=self.name,
            created_at=since,
            labels=dict(labels),
        )

    def start_done(self, engine: Engine, ready: bool, reason: str) -> None:
        """A task's readiness probe ended: the start of its service counts for the breaker."""
        service_id = self._service_of.get(engine.id, engine.id)
        if ready:
            self.provisioner.attempt_done(service_id, ok=True)
        else:
            failure = f"engine {engine.name}: {reason}"
            self.provisioner.attempt_done(service_id, ok=False, reason=failure)

    def container_stopped(self, container_id: str, action: str) -> None:
        """A task container died: the pass that follows finds which engine's task it was."""
        self._wake()

    def container_destroyed(self, container_id: str) -> None:
        self._wake()

    async def remove_container(self, container_id: str, name: str, why: str) -> bool:
        """Remove an engine's service (given the engine's task id, or the service's id)."""
        service_id = self._service_of.get(container_id, container_id)
        self.provisioner.attempt_withdrawn(service_id)
        try:
            await self._services.remove_service(service_id)
        except FleetError as exc:
            if exc.status == UNREACHABLE:
                raise
            log.warning("engine_remove_failed", engine=name, reason=exc.message)
            self._removal_failures[name] = exc.message
            return False
        self._removal_failures.pop(name, None)
        tasks = [t for t, s in self._service_of.items() if s == service_id]
        for engine_id in [service_id, *tasks]:  # its placeholder, or the engines of its tasks
            engine = self._pool.get(engine_id)
            if engine is not None:
                self._forget(engine, why)
            self._service_of.pop(engine_id, None)
        self.admission.gone(service_id)
        log.info("engine_service_removed", engine=name, reason=why)
        return True
