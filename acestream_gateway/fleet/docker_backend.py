"""The Docker backend: one Docker endpoint's side of the fleet.

It lists the endpoint's engine containers and makes the pool agree with them: it adopts the
containers it finds by their labels (never wipes them), removes exited, stranded or unadoptable
ones, starts engines through its provisioner (the admission point: slots and its own ports), and
removes the ones the plan lets go. Its Docker event follower (``events.py``) tells it at once of
engine containers that die, disappear or turn unhealthy, and of Docker going away and coming back;
after every reconnect it relists (a full pass of the fleet loop) before it applies events. In VPN
mode its VPN containers (``vpns.py``) decide where its engines' network namespaces are.

The loop, the plan and the readiness probes are shared (``reconciler.py``, ``readiness.py``); the
backend is the only part of the fleet that knows the engines are Docker containers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

from ..docker_endpoints import DockerEndpoint
from ..engines.client import EngineClient
from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..engines.recovery import LeftSessions
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from ..tasks import Supervisor
from .admission import Admission
from .blocks import Blocks
from .breaker import CircuitBreaker
from .docker import UNREACHABLE, DockerEngines, FleetError
from .docker_vpn import VpnSide
from .endpoints import FleetSlots
from .events import EventFollower, event_filter
from .ports import PortAllocator
from .provisioner import Provisioned, Provisioner
from .readiness import ReadinessProbes
from .specs import LABEL_ENDPOINT, ContainerRecord, engine_address, instance_filter

log = get_logger(__name__)


class DockerBackend:
    """One Docker endpoint's engines, kept in the pool as its containers are; see the module
    docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        client: EngineClient,
        metrics: Metrics,
        probes: ReadinessProbes,
        adopted: asyncio.Event,
        relist: Callable[[], Awaitable[None]],
        wake: Callable[[], None],
        left_sessions: LeftSessions | None = None,
        endpoint: DockerEndpoint | None = None,
        blocks: Blocks | None = None,
        slots: FleetSlots | None = None,
    ) -> None:
        """``relist``: a full pass of the fleet loop; ``wake``: ask for the next pass now;
        ``adopted``: set once the first pass adopted what it found; ``left_sessions``: what the
        start knows of sessions a dead gateway left on engines (an engine it cannot account for
        is adopted out of selection and replaced); ``endpoint``: the Docker endpoint it runs
        engines on (the one default endpoint without), ``blocks`` its view of the provisioning
        blocks, ``slots`` the fleet's slots it shares with the other endpoints."""
        self.endpoint = endpoint or settings.endpoints()[0]
        self.name = self.endpoint.name
        settings = settings.for_endpoint(self.endpoint)
        self._settings = settings
        self._blocks: Blocks = blocks or pool
        self.down_reason: str | None = None
        self._docker = docker
        self._pool = pool
        self._probes = probes
        self._adopted = adopted
        self._relist = relist
        self._left_sessions = left_sessions
        self.ports = PortAllocator(
            settings.port_range_host.lo,
            settings.port_range_host.hi,
            recheck_s=settings.port_recheck_s,
        )
        self.vpn = VpnSide.configured(
            settings, docker, pool, client, wake=wake, blocks=self._blocks
        )
        self.provisioner = Provisioner(
            settings=settings,
            docker=docker,
            pool=pool,
            ports=self.ports,
            on_started=self._register,
            vpns=self.vpn.vpns,
            metrics=metrics,
            blocks=self._blocks,
            slots=slots,
            share=self.endpoint.max_engines if self.endpoint.named else None,
        )
        self._removal_failures: dict[str, str] = {}
        self._died: set[str] = set()  # containers Docker reported dead, not yet removed
        self.docker_up = True
        self.events = EventFollower(
            source=docker, fleet=self, filters=event_filter(instance_filter(settings))
        )

    @property
    def admission(self) -> Admission:
        """The one admission point of engine starts, and the ledger of slots and ports."""
        return self.provisioner.admission

    @property
    def breaker(self) -> CircuitBreaker:
        """The provisioning breaker (its state is part of the fleet's status)."""
        return self.provisioner.breaker

    @property
    def removal_failures(self) -> dict[str, str]:
        """Containers that Docker would not remove, by name, with its answer."""
        return dict(self._removal_failures)

    def spawn_followers(self, tasks: Supervisor) -> None:
        """Follow the endpoint's Docker events (and its VPN containers') under ``tasks``."""
        where = f" of endpoint {self.name}" if self.endpoint.named else ""
        tasks.spawn_loop(self.events.run, name=f"docker events{where}")
        self.vpn.spawn_follower(tasks)

    # --- one pass ------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Look at the VPNs, list the containers, and make the pool agree with them."""
        await self.vpn.refresh(self.ports)
        listing = self.admission.listing()
        listed = await self._docker.list(instance_filter(self._settings))
        # The default endpoint's filter cannot exclude a label: named endpoints' engines on the
        # same daemon are theirs, not its.
        ours = [r for r in listed if r.labels.get(LABEL_ENDPOINT) == self._settings.endpoint_name]
        records = self.with_deaths(ours)
        await self._sync(self.admission.heal(listing, records))

    async def provision(self, wanted: int) -> Provisioned:
        """Start up to ``wanted`` engines, no more than the admission point has room for."""
        return await self.provisioner.provision(min(wanted, self.admission.room()))

    def publish(self) -> None:
        """Publish what blocks provisioning (the breaker's state, no VPN connected)."""
        self.provisioner.publish()
        self.vpn.publish_block(self.ports)

    # --- Docker events --------------------------------------------------------------------------

    async def relist(self) -> None:
        """List the containers again and act on what changed (after Docker events were missed)."""
        await self._relist()

    def engine_died(self, container_id: str, reason: str) -> None:
        """The container stopped (died, killed, out of memory): out of the pool at once. Its port
        stays held until the container is removed."""
        self._drop(container_id, reason)

    def container_gone(self, container_id: str) -> None:
        """The container no longer exists: out of the pool, and its port is free."""
        self._drop(container_id, "its container is gone")
        self.admission.gone(container_id)

    def container_stopped(self, container_id: str, action: str) -> None:
        """An engine's container died (``die``, ``oom``): out of the pool now, so its claims are
        lost and fail over; its port stays held until the container is gone."""
        if self._pool.get(container_id) is not None:
            self._died.add(container_id)
        self.engine_died(container_id, f"docker reported {action}")

    def container_destroyed(self, container_id: str) -> None:
        """An engine's container is gone: out of the pool, and its port is free again."""
        self._died.discard(container_id)
        self.container_gone(container_id)
        self.admission.destroyed(container_id)  # a listing under way must not bring it back

    def container_unhealthy(self, container_id: str) -> None:
        """Docker's health check of an engine failed: no new claims, its claims are lost."""
        engine = self._pool.get(container_id)
        if engine is not None and engine.state is not EngineState.UNHEALTHY:
            log.warning("engine_unhealthy", engine=engine.name, source="docker_health_check")
            self._pool.set_state(container_id, EngineState.UNHEALTHY)

    def docker_reachable(self, reachable: bool, reason: str = "", retry_in_s: float = 0) -> None:
        """Docker answered, or could not be reached: while it cannot, new channels that need a new
        engine are refused at once; engines and their streams are left alone (logged once).

        The block's message goes to players, so it names no address; the log has the detail."""
        if reachable:
            self._blocks.unblock(BlockedReason.DOCKER_UNAVAILABLE)
        else:
            message = (
                "the Docker API cannot be reached or is too slow: no new engine can be started"
            )
            self._blocks.block(BlockedReason.DOCKER_UNAVAILABLE, message, retry_in_s or None)
        self.down_reason = None if reachable else reason
        if reachable != self.docker_up:
            self.docker_up = reachable
            if reachable:
                log.info("docker_reachable", endpoint=self.name)
            else:
                log.warning(
                    "docker_unreachable", endpoint=self.name, reason=reason, retry_in_s=retry_in_s
                )

    def with_deaths(self, records: list[ContainerRecord]) -> list[ContainerRecord]:
        """Docker may still list a container as running just after it reported it dead: trust
        the event, so the container is removed, not adopted again."""
        return [
            dataclasses.replace(r, state="exited") if r.id in self._died and r.running else r
            for r in records
        ]

    def engines(self) -> list[Engine]:
        """The pool's engines that live on this endpoint."""
        return [e for e in self._pool.engines() if e.endpoint == self.name]

    # --- syncing with Docker -------------------------------------------------------------------

    async def _sync(self, records: list[ContainerRecord]) -> None:
        listed = {r.id for r in records}
        running = {r.id for r in records if r.running}
        for engine in self.engines():
            if engine.id not in running:
                self._drop(engine.id, "its container is not running")
            if engine.id not in listed:
                self.admission.gone(engine.id)
        for record in records:  # each counts at once (rule 6), before the awaits below
            self._hold_port(record)
        for record in records:
            stranded = self.vpn.stranded(record.labels) if record.running else None
            if stranded is not None:
                log.warning("engine_stranded", engine=record.name, reason=stranded)
            if not record.running or stranded is not None:
                self._hold_port(record)  # until the container is gone, whatever its state
                why = stranded or f"container {record.state}"
                await self.remove_container(record.id, record.name, why)
            elif self._pool.get(record.id) is None:
                await self.adopt(record)
        self.free_ports_of_gone(records)

    def free_ports_of_gone(self, records: list[ContainerRecord]) -> None:
        """Ports of engines that left the pool earlier (their container died) and whose
        container is no longer listed: the container is gone, so the port is free."""
        listed = {r.id for r in records}
        for container_id in self.admission.held:
            if container_id not in listed and self._pool.get(container_id) is None:
                self._died.discard(container_id)
                self.admission.gone(container_id)

    async def adopt(self, record: ContainerRecord) -> None:
        """Take a running engine container found by its labels into the pool."""
        port = record.port
        if port is None or not self.admission.hold(record.id, port):
            log.warning("engine_unadoptable", engine=record.name, port=port)
            await self.remove_container(record.id, record.name, "unadoptable")
            return
        engine = self._engine(record, port, created_at=record.created)
        if not self.ports.in_range(port):
            # Kept out of selection and removed once it carries nothing: its port belongs to an
            # older configuration, and PORT_RANGE_HOST is what the operator asked for now.
            engine.state = EngineState.DRAINING
            log.warning("engine_port_outside_range", engine=record.name, port=port)
        elif not self._accounted(engine):
            # It may carry sessions a dead gateway left, which nobody reads but which count
            # against its limit all the same: out of selection, replaced once empty (at once).
            engine.state = EngineState.DRAINING
            log.warning("engine_sessions_unaccounted", engine=record.name, port=port)
        self._pool.add(engine)
        log.info("engine_adopted", engine=record.name, port=port)
        if engine.state is EngineState.STARTING:
            self._probes.probe(engine)

    def _accounted(self, engine: Engine) -> bool:
        """Whether an engine found at start carries no session the gateway does not know of
        (engines adopted later were found by this run, which journals its own sessions)."""
        left = self._left_sessions
        return left is None or self._adopted.is_set() or left.accounts_for(engine.address)

    def _drop(self, engine_id: str, reason: str) -> None:
        """An engine went without being asked to: log it, then forget it."""
        engine = self._pool.get(engine_id)
        if engine is not None:
            log.warning("engine_gone", engine=engine.name, reason=reason, state=engine.state.value)
            self._forget(engine, reason)

    def _forget(self, engine: Engine, reason: str) -> None:
        """Out of the pool (its claims are lost); a provisioning it was part of has failed."""
        self._pool.remove(engine.id)
        self._probes.cancel(engine.id)
        self.provisioner.attempt_done(engine.id, ok=False, reason=f"engine {engine.name}: {reason}")

    def _hold_port(self, record: ContainerRecord) -> None:
        port = record.port
        if port is not None:
            self.admission.hold(record.id, port)

    async def remove_container(self, container_id: str, name: str, why: str) -> bool:
        """Remove one container; a failure is logged and left for the next pass."""
        # Removed by us, so no failed start: decided before the call, because Docker reports the
        # container's death (``die``) before it answers the removal.
        self.provisioner.attempt_withdrawn(container_id)
        try:
            await self._docker.remove(container_id)
        except FleetError as exc:
            if exc.status == UNREACHABLE:
                raise
            if self._removal_failures.get(name) != exc.message:
                log.warning("engine_remove_failed", engine=name, reason=exc.message)
            self._removal_failures[name] = exc.message
            return False
        self._removal_failures.pop(name, None)
        self._died.discard(container_id)
        engine = self._pool.get(container_id)
        if engine is not None:
            self._forget(engine, why)
        self.admission.gone(container_id)
        log.info("engine_container_removed", engine=name, reason=why)
        return True

    # --- new engines ---------------------------------------------------------------------------

    def start_done(self, engine: Engine, ready: bool, reason: str) -> None:
        """A readiness probe ended: the breaker counts the start."""
        if ready:
            self.provisioner.attempt_done(engine.id, ok=True)
        else:
            failure = f"engine {engine.name}: {reason}"
            self.provisioner.attempt_done(engine.id, ok=False, reason=failure)

    def _register(self, record: ContainerRecord, port: int) -> None:
        """A container the provisioner started (its port held through the admission point): in
        the pool as STARTING, probed until ready."""
        engine = self._engine(record, port, created_at=time.time())
        self._pool.add(engine)
        self._probes.probe(engine)

    def _engine(self, record: ContainerRecord, port: int, *, created_at: float) -> Engine:
        return Engine(
            id=record.id,
            name=record.name,
            address=self.vpn.address(record.labels, port) or engine_address(self._settings, port),
            endpoint=self.name,
            created_at=created_at,
            labels=record.labels,
        )
