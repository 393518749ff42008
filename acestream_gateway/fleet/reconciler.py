"""The reconciler: makes the Docker containers and the engine pool agree, then follows the plan.

It adopts the engine containers it finds by their labels (never wipes them), removes exited or
broken ones, keeps ``MIN_REPLICAS`` engines empty, replaces unhealthy engines and removes idle
surplus. Starting engines is the provisioner's (several at once, behind a circuit breaker, so an
engine that cannot start is not recreated on every pass); probing running engines is the health
prober's; the reconciler owns both, and the readiness probes of new engines. It runs as one
guarded loop that wakes on pool changes, on its interval, or when the breaker lets a trial
through. A failure of one container is logged and retried on the next pass; a failure of Docker is
retried with backoff; neither touches playing streams.

Between passes its Docker event follower (``events.py``) tells it at once of engine containers
that die, disappear or turn unhealthy, and of Docker going away and coming back (list-then-watch:
after every reconnect the follower has it relist before it applies events).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from ..engines.client import EngineClient
from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..engines.recovery import LeftSessions
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from ..tasks import Backoff, Supervisor
from .admission import Admission
from .breaker import BreakerState, CircuitBreaker
from .docker import UNREACHABLE, DockerEngines, FleetError
from .events import EventFollower, event_filter
from .gluetun import GluetunClient
from .health import EngineNeverReady, HealthProber, wait_ready
from .plan import plan_fleet
from .ports import PortAllocator
from .provisioner import Provisioner
from .specs import LABEL_VPN, ContainerRecord, engine_address, instance_filter
from .vpns import VpnEventFollower, Vpns, VpnStatus

log = get_logger(__name__)

_PROBE_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """What the fleet side knows beyond the pool, for the status endpoint and for tests."""

    breaker: BreakerState
    breaker_eta_s: float | None
    breaker_openings: int
    ports_held: dict[int, str]
    ports_aside: list[int]
    ports_outside_range: dict[int, str]
    removal_failures: dict[str, str]
    last_error: str | None
    vpns: tuple[
        VpnStatus, ...
    ] = ()  # VPN mode: each VPN container, in GLUETUN_CONTAINER_NAME order


class ActionRefused(Exception):
    """An operator's fleet action cannot apply; ``unknown``: no such engine (else it conflicts
    with the engine's state or the fleet's)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unknown = unknown


class Reconciler:
    """Keeps the fleet of engine containers as the plan wants it; owns its probe tasks."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        client: EngineClient,
        metrics: Metrics | None = None,
        left_sessions: LeftSessions | None = None,
    ) -> None:
        """``left_sessions``: what the start knows of sessions a dead gateway left on engines;
        an engine it cannot account for is adopted out of selection and replaced."""
        self._settings = settings
        self._left_sessions = left_sessions
        self._docker = docker
        self.metrics = metrics or Metrics()
        self._pool = pool
        self._client = client
        self.ports = PortAllocator(
            settings.port_range_host.lo,
            settings.port_range_host.hi,
            recheck_s=settings.port_recheck_s,
        )
        self.vpns = self._vpns(settings, docker, pool, client)
        self.provisioner = Provisioner(
            settings=settings,
            docker=docker,
            pool=pool,
            ports=self.ports,
            on_started=self._register,
            vpns=self.vpns,
            metrics=self.metrics,
        )
        self.health = HealthProber.configured(settings, pool=pool, client=client)
        self._tasks = Supervisor("fleet reconciler")
        self._pass = asyncio.Lock()
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._unhealthy_since: dict[str, float] = {}
        self._removal_failures: dict[str, str] = {}
        self.adopted = asyncio.Event()
        self.last_error: str | None = None
        self.docker_up = True
        self._died: set[str] = set()  # containers Docker reported dead, not yet removed
        self.events = EventFollower(
            source=docker, fleet=self, filters=event_filter(instance_filter(settings))
        )
        self._woken = asyncio.Event()
        self.vpn_events = (
            None
            if self.vpns is None
            else VpnEventFollower(source=docker, names=self.vpns.names, wake=self.wake)
        )

    @staticmethod
    def _vpns(
        settings: Settings, docker: DockerEngines, pool: EnginePool, client: EngineClient
    ) -> Vpns | None:
        if not settings.vpn_mode:
            return None
        key = settings.gluetun_api_key
        gluetun = GluetunClient(
            client.http,
            timeout_s=settings.health_probe_timeout_s,
            api_key=None if key is None else key.get_secret_value(),
        )
        return Vpns(settings=settings, docker=docker, gluetun=gluetun, pool=pool)

    @property
    def admission(self) -> Admission:
        """The one admission point of engine starts, and the ledger of slots and ports."""
        return self.provisioner.admission

    @property
    def breaker(self) -> CircuitBreaker:
        """The provisioning breaker (its state is part of the fleet's status)."""
        return self.provisioner.breaker

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """The reconcile loop and the health probes; cancel it to stop (engines keep running)."""
        self._tasks.spawn_loop(self.health.run, name="engine health probes")
        self._tasks.spawn_loop(self.events.run, name="docker events")
        if self.vpn_events is not None:
            self._tasks.spawn_loop(self.vpn_events.run, name="vpn container events")
        backoff = Backoff()
        try:
            while True:
                seen = self._pool.version  # a change during the pass wakes the next one at once
                try:
                    await self.reconcile()
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
                    delay = self._next_pass_in()
                await self._sleep(delay, wake_on_change=not backoff.failures, since=seen)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the probes (engines are left running for adoption)."""
        await self._tasks.close()

    async def check_vpns(self) -> None:
        """At start: raise :class:`~.vpn.VpnError` for a VPN container that does not publish its
        share of PORT_RANGE_HOST. Docker not answering leaves the question to the passes."""
        if self.vpns is None:
            return
        try:
            await self.vpns.refresh()
        except FleetError as exc:
            log.warning("vpn_check_deferred", reason=exc.message)
            return
        self.vpns.check_published()

    def wake(self) -> None:
        """Run the next pass now (a VPN container changed)."""
        self._woken.set()

    async def reconcile(self) -> None:
        """One pass: look at the VPNs, sync with Docker, then apply the plan."""
        async with self._pass:
            if self.vpns is not None:
                await self.vpns.refresh()
                self._publish_vpn_block()
            listing = self.admission.listing()
            records = self._with_deaths(await self._docker.list(instance_filter(self._settings)))
            await self._sync(self.admission.heal(listing, records))
            if not self.adopted.is_set():
                log.info("fleet_adopted", engines=len(self._pool.snapshot()))
                self.adopted.set()
            await self._apply_plan()

    async def relist(self) -> None:
        """List the containers again and act on what changed (after Docker events were missed)."""
        await self.reconcile()

    def engine_died(self, container_id: str, reason: str) -> None:
        """The container stopped (died, killed, out of memory): out of the pool at once. Its port
        stays held until the container is removed."""
        self._drop(container_id, reason)

    def container_gone(self, container_id: str) -> None:
        """The container no longer exists: out of the pool, and its port is free."""
        self._drop(container_id, "its container is gone")
        self._free_port(container_id)

    # --- Docker events --------------------------------------------------------------------------

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
            self._pool.unblock(BlockedReason.DOCKER_UNAVAILABLE)
        else:
            message = (
                "the Docker API cannot be reached or is too slow: no new engine can be started"
            )
            self._pool.block(BlockedReason.DOCKER_UNAVAILABLE, message, retry_in_s or None)
        if reachable != self.docker_up:
            self.docker_up = reachable
            if reachable:
                log.info("docker_reachable")
            else:
                log.warning("docker_unreachable", reason=reason, retry_in_s=retry_in_s)

    def _with_deaths(self, records: list[ContainerRecord]) -> list[ContainerRecord]:
        """Docker may still list a container as running just after it reported it dead: trust
        the event, so the container is removed, not adopted again."""
        return [
            dataclasses.replace(r, state="exited") if r.id in self._died and r.running else r
            for r in records
        ]

    def status(self) -> FleetStatus:
        names = {e.id: e.name for e in self._pool.engines()}
        return FleetStatus(
            breaker=self.breaker.state,
            breaker_eta_s=self.breaker.eta_s(),
            breaker_openings=self.breaker.openings,
            ports_held=self.ports.held,
            ports_aside=self.ports.aside,
            ports_outside_range={
                p: names.get(owner, owner) for p, owner in self.ports.outside_range().items()
            },
            removal_failures=dict(self._removal_failures),
            last_error=self.last_error,
            vpns=self.vpn_status(),
        )

    def vpn_status(self) -> tuple[VpnStatus, ...]:
        """Per VPN container: its id, whether it is connected and why not, its forwarded port,
        its share of the ports and the engines behind it (empty outside VPN mode)."""
        return () if self.vpns is None else self.vpns.status()

    def _publish_vpn_block(self) -> None:
        """Block provisioning while no VPN can take an engine (vpn_disconnected)."""
        if self.vpns is None:
            return
        message = self.vpns.blocked_message(self.ports)
        if message is None:
            self._pool.unblock(BlockedReason.VPN_DISCONNECTED)
        else:
            eta = self._settings.health_check_interval_s
            self._pool.block(BlockedReason.VPN_DISCONNECTED, message, eta)

    # --- operators' actions ----------------------------------------------------------------------

    async def start_engine(self) -> Engine:
        """Start one engine now (the plan may reap it later as a surplus spare, after the grace
        period). Raises :class:`ActionRefused` when none can be started."""
        if self.admission.room() < 1:  # a quick answer; the admission point decides below
            limit = self._settings.max_active_replicas
            raise ActionRefused(f"the fleet is at MAX_ACTIVE_REPLICAS ({limit})")
        async with self._pass:
            result = await self.provisioner.provision(1)
        new = [e for e in map(self._pool.get, (r.id for r in result.started)) if e is not None]
        if new:
            return new[0]
        if result.refused is not None:
            raise ActionRefused(result.refused.message)
        block = self._pool.blocked()
        raise ActionRefused(block.message if block else "no engine could be started")

    def drain(self, engine_id: str) -> Engine:
        """No new channel goes to the engine; the plan removes it once it carries none."""
        engine = self._known(engine_id)
        if engine.state not in (EngineState.READY, EngineState.DRAINING):
            state = engine.state.value
            raise ActionRefused(f"engine {engine.name} is {state}: only a ready one drains")
        self._pool.set_state(engine.id, EngineState.DRAINING)
        return engine

    async def remove_engine(self, engine_id: str) -> Engine:
        """Remove the engine's container now; its channels move to other engines."""
        engine = self._known(engine_id)
        if engine.state is not EngineState.UNHEALTHY:
            self._pool.set_state(engine.id, EngineState.DRAINING)  # out of selection at once
        async with self._pass:
            if not await self._remove_container(engine.id, engine.name, "removed by an operator"):
                raise ActionRefused(f"Docker did not remove engine {engine.name}; retried later")
        return engine

    def reconcile_soon(self) -> None:
        """Run a pass now, beside the loop (passes never overlap); a pass already asked for and
        not yet begun covers this request too."""
        if "requested reconcile pass" not in self._tasks.names:
            self._tasks.spawn(self._requested_pass(), name="requested reconcile pass")

    async def _requested_pass(self) -> None:
        try:
            await self.reconcile()
        except FleetError as exc:
            log.warning("fleet_reconcile_failed", reason=exc.message, requested=True)

    def _known(self, engine_id: str) -> Engine:
        """The engine by its id (the container's) or its name."""
        engine = self._pool.get(engine_id) or next(
            (e for e in self._pool.engines() if e.name == engine_id), None
        )
        if engine is None:
            raise ActionRefused(f"no engine {engine_id!r}", unknown=True)
        return engine

    # --- syncing with Docker -------------------------------------------------------------------

    async def _sync(self, records: list[ContainerRecord]) -> None:
        listed = {r.id for r in records}
        running = {r.id for r in records if r.running}
        for engine in self._pool.engines():
            if engine.id not in running:
                self._drop(engine.id, "its container is not running")
            if engine.id not in listed:
                self._free_port(engine.id)
        for record in records:
            stranded = self._stranded(record) if record.running else None
            if stranded is not None:
                log.warning("engine_stranded", engine=record.name, reason=stranded)
            if not record.running or stranded is not None:
                self._hold_port(record)  # until the container is gone, whatever its state
                why = stranded or f"container {record.state}"
                await self._remove_container(record.id, record.name, why)
            elif self._pool.get(record.id) is None:
                await self._adopt(record)
        self._free_ports_of_gone(records)

    def _stranded(self, record: ContainerRecord) -> str | None:
        """Why an engine's network namespace is not the one engines must be in now (VPN mode:
        the current run of its VPN container; else its own), or None."""
        if self.vpns is not None:
            return self.vpns.stranded(record.labels)
        if LABEL_VPN in record.labels:
            return "it was made behind a VPN container, and GLUETUN_CONTAINER_NAME is unset"
        return None

    def _free_ports_of_gone(self, records: list[ContainerRecord]) -> None:
        """Ports of engines that left the pool earlier (their container died) and whose
        container is no longer listed: the container is gone, so the port is free."""
        listed = {r.id for r in records}
        for container_id in self.admission.held:
            if container_id not in listed and self._pool.get(container_id) is None:
                self._died.discard(container_id)
                self._free_port(container_id)

    async def _adopt(self, record: ContainerRecord) -> None:
        port = record.port
        if port is None or not self.admission.hold(record.id, port):
            log.warning("engine_unadoptable", engine=record.name, port=port)
            await self._remove_container(record.id, record.name, "unadoptable")
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
            self._probe(engine)

    def _accounted(self, engine: Engine) -> bool:
        """Whether an engine found at start carries no session the gateway does not know of
        (engines adopted later were found by this run, which journals its own sessions)."""
        left = self._left_sessions
        return left is None or self.adopted.is_set() or left.accounts_for(engine.address)

    def _drop(self, engine_id: str, reason: str) -> None:
        """An engine went without being asked to: log it, then forget it."""
        engine = self._pool.get(engine_id)
        if engine is not None:
            log.warning("engine_gone", engine=engine.name, reason=reason, state=engine.state.value)
            self._forget(engine, reason)

    def _forget(self, engine: Engine, reason: str) -> None:
        """Out of the pool (its claims are lost); a provisioning it was part of has failed."""
        self._pool.remove(engine.id)
        self._unhealthy_since.pop(engine.id, None)
        probe = self._probes.pop(engine.id, None)
        if probe is not None:
            probe.cancel()
        self.provisioner.attempt_done(engine.id, ok=False, reason=f"engine {engine.name}: {reason}")

    def _hold_port(self, record: ContainerRecord) -> None:
        port = record.port
        if port is not None:
            self.admission.hold(record.id, port)

    def _free_port(self, engine_id: str) -> None:
        self.admission.gone(engine_id)

    async def _remove_container(self, container_id: str, name: str, why: str) -> bool:
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
        self._free_port(container_id)
        log.info("engine_container_removed", engine=name, reason=why)
        return True

    # --- following the plan --------------------------------------------------------------------

    async def _apply_plan(self) -> None:
        now = time.monotonic()
        self._retire_for_forwarding()
        self._track_unhealthy(now)
        plan = plan_fleet(
            self._pool.snapshot(),
            min_replicas=self._settings.min_replicas,
            max_replicas=self._settings.max_active_replicas,
            grace_s=self._settings.engine_grace_period_s,
            now=now,
            unhealthy_since=self._unhealthy_since,
            unhealthy_wait_s=self._settings.unhealthy_engine_timeout_s,
            waiting=self._pool.waiting(),
        )
        for engine_id in plan.remove:  # out of selection before the first await
            engine = self._pool.get(engine_id)
            if engine is not None and engine.state is not EngineState.UNHEALTHY:
                self._pool.set_state(engine_id, EngineState.DRAINING)
        for engine_id in plan.remove:  # removed first: a start may need the place
            engine = self._pool.get(engine_id)
            if engine is not None:
                await self._remove_container(engine_id, engine.name, engine.state.value)
        # A removal that failed left its container, and its place, taken.
        await self.provisioner.provision(min(plan.start, self.admission.room()))
        self.provisioner.publish()
        self._publish_vpn_block()

    def _retire_for_forwarding(self) -> None:
        """Engines on a VPN's old forwarded port, or idle ones whose replacement is to get the
        new one, leave selection; busy ones' channels fail over, and the plan replaces them."""
        if self.vpns is None:
            return
        for engine_id in self.vpns.plan_forwarding():
            engine = self._pool.get(engine_id)
            if engine is not None:
                log.info("engine_replaced_for_forwarded_port", engine=engine.name)
                self._pool.retire(engine_id)

    def _track_unhealthy(self, now: float) -> None:
        unhealthy = {e.id for e in self._pool.engines() if e.state is EngineState.UNHEALTHY}
        for engine_id in list(self._unhealthy_since):
            if engine_id not in unhealthy:
                del self._unhealthy_since[engine_id]
        for engine_id in unhealthy:
            self._unhealthy_since.setdefault(engine_id, now)

    def _register(self, record: ContainerRecord, port: int) -> None:
        """A container the provisioner started (its port held through the admission point): in
        the pool as STARTING, probed until ready."""
        engine = self._engine(record, port, created_at=time.time())
        self._pool.add(engine)
        self._probe(engine)

    def _engine(self, record: ContainerRecord, port: int, *, created_at: float) -> Engine:
        address = None if self.vpns is None else self.vpns.address(record.labels, port)
        return Engine(
            id=record.id,
            name=record.name,
            address=address or engine_address(self._settings, port),
            created_at=created_at,
            labels=record.labels,
        )

    # --- probing new engines -------------------------------------------------------------------

    def _probe(self, engine: Engine) -> None:
        task = self._tasks.spawn(self._wait_ready(engine), name=f"readiness probe {engine.name}")
        self._probes[engine.id] = task
        task.add_done_callback(lambda done: self._probe_ended(engine.id, done))

    def _probe_ended(self, engine_id: str, task: asyncio.Task[None]) -> None:
        if self._probes.get(engine_id) is task:
            del self._probes[engine_id]

    async def _wait_ready(self, engine: Engine) -> None:
        timeout_s = self._settings.engine_startup_timeout_s
        started = time.monotonic()
        try:
            version = await wait_ready(
                self._client, engine.address, timeout_s=timeout_s, interval_s=_PROBE_INTERVAL_S
            )
        except EngineNeverReady as exc:
            log.warning("engine_start_timeout", engine=engine.name, timeout_s=timeout_s)
            self._start_failed(engine, str(exc))
        except Exception as exc:  # a crashed probe must not leave the engine STARTING for ever
            log.exception("engine_probe_crashed", engine=engine.name)
            self._start_failed(engine, f"its readiness probe crashed: {exc!r}")
        else:
            if self._pool.get(engine.id) is None:
                return
            self._pool.set_state(engine.id, EngineState.READY)
            self.metrics.engine_start_duration.observe(time.monotonic() - started)
            log.info("engine_ready", engine=engine.name, version=version)
            self.provisioner.attempt_done(engine.id, ok=True)

    def _start_failed(self, engine: Engine, reason: str) -> None:
        """The plan removes it (UNHEALTHY and empty); the breaker counts it."""
        self._pool.set_state(engine.id, EngineState.UNHEALTHY)
        self.provisioner.attempt_done(engine.id, ok=False, reason=f"engine {engine.name}: {reason}")

    # --- pacing --------------------------------------------------------------------------------

    def _next_pass_in(self) -> float:
        delay = self._settings.health_check_interval_s
        eta = self.breaker.eta_s()
        return delay if eta is None or eta <= 0 else min(delay, eta)

    async def _sleep(self, delay_s: float, *, wake_on_change: bool, since: int = -1) -> None:
        """Sleep ``delay_s``, or when healthy until the pool changes (a claim took a spare) or a
        VPN container does (:meth:`wake`); a change after the pool's version ``since`` (taken
        before the pass) counts too, so a claim made during the pass is not missed."""
        if not wake_on_change:
            await asyncio.sleep(delay_s)
            return
        waits = [
            asyncio.ensure_future(self._pool.wait_changed(since)),
            asyncio.ensure_future(self._woken.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            self._woken.clear()

    def _note_failure(self, message: str, retry_in_s: float, first: bool) -> None:
        self.last_error = message
        if first:
            log.warning("fleet_unavailable", reason=message, retry_in_s=retry_in_s)
        else:
            log.debug("fleet_still_unavailable", reason=message, retry_in_s=retry_in_s)
