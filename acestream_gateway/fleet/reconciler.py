"""The reconciler: makes the Docker containers and the engine pool agree, then follows the plan.

It adopts the engine containers it finds by their labels (never wipes them), removes exited or
broken ones, starts engines until ``MIN_REPLICAS`` are empty, probes new engines until they answer
and removes idle surplus. It runs as one guarded loop that wakes on pool changes or on its
interval; a failure is logged once, retried with backoff, and never touches playing streams.
Between passes its Docker event follower (``events.py``) tells it at once of engine containers
that die or turn unhealthy, and of Docker going away and coming back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import structlog

from ..engines.client import EngineClient, EngineError
from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..settings import Settings
from ..tasks import Backoff, Supervisor
from .docker import UNREACHABLE, DockerEngines, FleetError
from .events import EventFollower, event_filter
from .plan import plan_fleet
from .ports import PortAllocator, PortsExhausted
from .specs import ContainerRecord, container_name, create_body, engine_address, instance_filter

log = get_logger(__name__)

_PROBE_INTERVAL_S = 0.5
_START_ATTEMPTS = 3


class Reconciler:
    """Keeps the fleet of engine containers as the plan wants it; owns its probe tasks."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        client: EngineClient,
    ) -> None:
        self._settings = settings
        self._docker = docker
        self._pool = pool
        self._client = client
        self.ports = PortAllocator(settings.port_range_host.lo, settings.port_range_host.hi)
        self._ports_by_engine: dict[str, int] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._bad_ports: set[int] = set()
        self.adopted = asyncio.Event()
        self.last_error: str | None = None
        self.docker_up = True
        self._died: set[str] = set()  # engines' containers Docker reported dead, not yet removed
        self._passing = asyncio.Lock()
        self._tasks = Supervisor("fleet reconciler")
        self.events = EventFollower(
            source=docker, fleet=self, filters=event_filter(instance_filter(settings))
        )

    async def run(self) -> None:
        """The reconcile loop; cancel it to stop (engines are left running for adoption)."""
        structlog.contextvars.clear_contextvars()
        self._tasks.spawn_loop(self.events.run, name="docker events")
        backoff = Backoff()
        try:
            while True:
                try:
                    await self.relist()
                except FleetError as exc:
                    delay = backoff.next()
                    self._note_failure(exc.message, delay, backoff.failures == 1)
                    if exc.unreachable:
                        self.docker_reachable(False, exc.message, delay)
                except Exception as exc:  # the guard of a long-lived loop: log, back off, go on
                    delay = backoff.next()
                    log.exception("fleet_reconcile_crashed", retry_in_s=delay)
                    self.last_error = repr(exc)
                else:
                    self.docker_reachable(True)
                    if backoff.failures:
                        log.info("fleet_recovered")
                    backoff.reset()
                    self.last_error = None
                    delay = self._settings.health_check_interval_s
                await self._sleep(delay, wake_on_change=not backoff.failures)
        finally:
            await self._tasks.close()
            await self._stop_probes()

    async def relist(self) -> None:
        """A full pass now (list, sync, plan); passes never overlap."""
        async with self._passing:
            await self.reconcile()

    async def reconcile(self) -> None:
        """One pass: sync with Docker, then apply the plan."""
        records = self._with_deaths(await self._docker.list(instance_filter(self._settings)))
        await self._sync(records)
        if not self.adopted.is_set():
            log.info("fleet_adopted", engines=len(self._pool.snapshot()))
            self.adopted.set()
        plan = plan_fleet(
            self._pool.snapshot(),
            min_replicas=self._settings.min_replicas,
            max_replicas=self._settings.max_active_replicas,
            grace_s=self._settings.engine_grace_period_s,
            now=time.monotonic(),
        )
        for engine_id in plan.remove:
            self._pool.set_state(engine_id, EngineState.DRAINING)  # no await since the plan
        for engine_id in plan.remove:
            await self._retire(engine_id)
        if plan.start:
            await self._provision(plan.start)
        else:
            self._unblock()  # nothing to provision: nothing blocks new channels

    # --- syncing with Docker -------------------------------------------------------------------

    async def _sync(self, records: list[ContainerRecord]) -> None:
        running = {r.id: r for r in records if r.running}
        for load in self._pool.snapshot():
            if load.engine.id not in running:
                log.warning("engine_gone", engine=load.engine.name, streams=load.streams)
                self._forget(load.engine.id)
        for record in records:
            if not record.running:
                log.info("engine_container_removed", engine=record.name, state=record.state)
                await self._docker.remove(record.id)
                self._forget(record.id)
            elif self._pool.get(record.id) is None:
                await self._adopt(record)
        self._free_ports_of_gone(records)

    async def _adopt(self, record: ContainerRecord) -> None:
        port = record.port
        if port is None or not self.ports.claim(port, record.id):
            log.warning("engine_unadoptable", engine=record.name, port=port)
            await self._docker.remove(record.id)
            return
        self._ports_by_engine[record.id] = port
        engine = Engine(
            id=record.id,
            name=record.name,
            address=engine_address(self._settings, port),
            created_at=record.created,
            labels=record.labels,
        )
        self._pool.add(engine)
        log.info("engine_adopted", engine=record.name, port=port)
        self._probe(engine)

    def _forget(self, engine_id: str) -> None:
        self._pool.remove(engine_id)
        self._died.discard(engine_id)
        probe = self._probes.pop(engine_id, None)
        if probe is not None:
            probe.cancel()
        port = self._ports_by_engine.pop(engine_id, None)
        if port is not None:
            self.ports.release(port)

    def _with_deaths(self, records: list[ContainerRecord]) -> list[ContainerRecord]:
        """Docker may still list a container as running just after it reported it dead: trust
        the event, so the container is removed, not adopted again."""
        return [
            dataclasses.replace(r, state="exited") if r.id in self._died and r.running else r
            for r in records
        ]

    def _free_ports_of_gone(self, records: list[ContainerRecord]) -> None:
        """Ports of engines that left the pool (their container died) and whose container is no
        longer listed: the container is gone, so the port is free."""
        listed = {r.id for r in records}
        for engine_id in list(self._ports_by_engine):
            if engine_id not in listed and self._pool.get(engine_id) is None:
                self._forget(engine_id)

    # --- Docker events -------------------------------------------------------------------------

    def container_stopped(self, container_id: str, action: str) -> None:
        """An engine's container died: out of the pool now, so its claims are lost and fail over;
        its port stays held until the container is gone (the next pass removes it)."""
        engine = self._pool.get(container_id)
        if engine is None:
            return
        streams = len(self._pool.claims_on(container_id))
        log.warning("engine_gone", engine=engine.name, streams=streams, docker_event=action)
        self._died.add(container_id)
        self._pool.remove(container_id)
        probe = self._probes.pop(container_id, None)
        if probe is not None:
            probe.cancel()

    def container_destroyed(self, container_id: str) -> None:
        """An engine's container is gone: out of the pool, and its port is free again."""
        self.container_stopped(container_id, "destroy")
        self._forget(container_id)

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
            self._pool.unblock(BlockedReason.DOCKER_UNAVAILABLE)
        else:
            message = "the Docker API cannot be reached: no new engine can be started"
            self._pool.block(BlockedReason.DOCKER_UNAVAILABLE, message, retry_in_s or None)
        if reachable != self.docker_up:
            self.docker_up = reachable
            if reachable:
                log.info("docker_reachable")
            else:
                log.warning("docker_unreachable", reason=reason, retry_in_s=retry_in_s)

    # --- changing the fleet --------------------------------------------------------------------

    async def _provision(self, count: int) -> None:
        try:
            await self._docker.ensure_image(self._settings.engine_image)
        except FleetError as exc:
            code = (
                BlockedReason.DOCKER_UNAVAILABLE
                if exc.status == UNREACHABLE
                else BlockedReason.IMAGE_UNAVAILABLE
            )
            self._pool.block(code, f"cannot provision engines: {exc.message}")
            raise
        self._pool.unblock(BlockedReason.IMAGE_UNAVAILABLE)
        try:
            for _ in range(count):
                await self._start_engine()
        except (FleetError, PortsExhausted) as exc:
            reason = exc.message if isinstance(exc, FleetError) else str(exc)
            self._pool.block(BlockedReason.CIRCUIT_BREAKER, f"cannot provision engines: {reason}")
            raise FleetError(getattr(exc, "status", 507), reason) from None
        self._unblock()

    def _unblock(self) -> None:
        for reason in (BlockedReason.IMAGE_UNAVAILABLE, BlockedReason.CIRCUIT_BREAKER):
            self._pool.unblock(reason)

    async def _start_engine(self) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = self.ports.reserve("starting", avoid=self._bad_ports)
            name = container_name(self._settings, port)
            try:
                record = await self._docker.run(name, create_body(self._settings, port))
            except FleetError as exc:
                self.ports.release(port)
                if exc.status not in (409, 500) or attempt == _START_ATTEMPTS:
                    raise
                log.warning("engine_port_unusable", port=port, reason=exc.message)
                self._bad_ports.add(port)
                continue
            self.ports.rename(port, record.id)
            self._ports_by_engine[record.id] = port
            engine = Engine(
                id=record.id,
                name=record.name,
                address=engine_address(self._settings, port),
                created_at=time.time(),
                labels=record.labels,
            )
            self._pool.add(engine)
            log.info("engine_started", engine=engine.name, port=port)
            self._probe(engine)
            return

    async def _retire(self, engine_id: str) -> None:
        engine = self._pool.get(engine_id)
        name = engine.name if engine else engine_id
        self._forget(engine_id)
        await self._docker.remove(engine_id)
        log.info("engine_removed", engine=name)

    # --- probing new engines -------------------------------------------------------------------

    def _probe(self, engine: Engine) -> None:
        task = asyncio.create_task(self._wait_ready(engine), name=f"probe {engine.name}")
        self._probes[engine.id] = task
        task.add_done_callback(lambda _: self._probes.pop(engine.id, None))

    async def _wait_ready(self, engine: Engine) -> None:
        structlog.contextvars.clear_contextvars()
        deadline = time.monotonic() + self._settings.engine_startup_timeout_s
        while time.monotonic() < deadline:
            try:
                version = await self._client.version(engine.address)
            except EngineError:
                await asyncio.sleep(_PROBE_INTERVAL_S)
                continue
            self._pool.set_state(engine.id, EngineState.READY)
            log.info("engine_ready", engine=engine.name, version=version)
            return
        log.warning("engine_start_timeout", engine=engine.name)
        self._pool.set_state(engine.id, EngineState.UNHEALTHY)

    async def _stop_probes(self) -> None:
        probes = list(self._probes.values())
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)

    # --- pacing --------------------------------------------------------------------------------

    async def _sleep(self, delay_s: float, *, wake_on_change: bool) -> None:
        """Sleep ``delay_s``, or until the pool changes (a claim took a spare) when healthy."""
        if not wake_on_change:
            await asyncio.sleep(delay_s)
            return
        try:
            async with asyncio.timeout(delay_s):
                await self._pool.wait_changed()
        except TimeoutError:
            pass

    def _note_failure(self, message: str, retry_in_s: float, first: bool) -> None:
        self.last_error = message
        if first:
            log.warning("fleet_unavailable", reason=message, retry_in_s=retry_in_s)
        else:
            log.debug("fleet_still_unavailable", reason=message, retry_in_s=retry_in_s)
