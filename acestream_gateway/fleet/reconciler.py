"""The fleet loop: makes the engine pool agree with the backend, then follows the plan.

Each pass has the backend (``docker_backend.py``) sync the pool with what runs (adopting the
engines it finds by their labels, never wiping them, and removing exited or broken ones), then
applies the plan (``plan.py``, pure): it keeps ``MIN_REPLICAS`` engines empty, replaces unhealthy
engines and removes idle surplus, removals before starts. Starting engines is the backend's
provisioner's (several at once, behind a circuit breaker, so an engine that cannot start is not
recreated on every pass); probing running engines is the health prober's, probing new ones the
readiness probes' (``readiness.py``); operators' actions are ``actions.py``'s. The loop owns their
tasks. It runs guarded: it wakes on pool changes, on its interval, when the breaker lets a trial
through, or when the backend asks; a failure of one engine is logged and retried on the next
pass; a failure of the backend's Docker is retried with backoff; neither touches playing streams.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..engines.client import EngineClient
from ..engines.model import EngineState
from ..engines.pool import EnginePool
from ..engines.recovery import LeftSessions
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from ..tasks import Backoff, Supervisor
from .actions import ActionRefused, FleetActions
from .admission import Admission
from .breaker import BreakerState, CircuitBreaker
from .docker import DockerEngines, FleetError
from .docker_backend import DockerBackend
from .events import EventFollower
from .health import HealthProber
from .plan import plan_fleet
from .ports import PortAllocator
from .provisioner import Provisioner
from .readiness import ReadinessProbes
from .vpns import Vpns, VpnStatus

__all__ = ["ActionRefused", "FleetStatus", "Reconciler"]

log = get_logger(__name__)


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


class Reconciler:
    """Keeps the fleet of engines as the plan wants it; owns its probe and follower tasks."""

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
        self.metrics = metrics or Metrics()
        self._pool = pool
        self._tasks = Supervisor("fleet reconciler")
        self._pass = asyncio.Lock()
        self._unhealthy_since: dict[str, float] = {}
        self._woken = asyncio.Event()
        self.adopted = asyncio.Event()
        self.last_error: str | None = None
        self.probes = ReadinessProbes(
            pool=pool,
            client=client,
            metrics=self.metrics,
            tasks=self._tasks,
            startup_timeout_s=settings.engine_startup_timeout_s,
            on_done=lambda engine, ready, why: self.backend.start_done(engine, ready, why),
        )
        self.backend = DockerBackend(
            settings=settings,
            docker=docker,
            pool=pool,
            client=client,
            metrics=self.metrics,
            probes=self.probes,
            adopted=self.adopted,
            relist=self.reconcile,
            wake=self.wake,
            left_sessions=left_sessions,
        )
        self.actions = FleetActions(
            settings=settings, pool=pool, backend=self.backend, passes=self._pass
        )
        self.health = HealthProber.configured(settings, pool=pool, client=client)

    # --- the backend's parts, as the status and the tests see them -------------------------------

    @property
    def admission(self) -> Admission:
        """The one admission point of engine starts, and the ledger of slots and ports."""
        return self.backend.admission

    @property
    def breaker(self) -> CircuitBreaker:
        """The provisioning breaker (its state is part of the fleet's status)."""
        return self.backend.breaker

    @property
    def provisioner(self) -> Provisioner:
        return self.backend.provisioner

    @property
    def ports(self) -> PortAllocator:
        return self.backend.ports

    @property
    def events(self) -> EventFollower:
        return self.backend.events

    @property
    def vpns(self) -> Vpns | None:
        return self.backend.vpn.vpns

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """The reconcile loop and the health probes; cancel it to stop (engines keep running)."""
        self._tasks.spawn_loop(self.health.run, name="engine health probes")
        self.backend.spawn_followers(self._tasks)
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
                        self.backend.docker_reachable(False, exc.message, delay)
                except Exception as exc:  # the guard of a long-lived loop: log, back off, go on
                    delay = backoff.next()
                    log.exception("fleet_reconcile_crashed", retry_in_s=delay)
                    self.last_error = repr(exc)
                else:
                    self.backend.docker_reachable(True)
                    if backoff.failures:
                        log.info("fleet_recovered")
                    backoff.reset()
                    self.last_error = None
                    delay = self._next_pass_in()
                await self._sleep(delay, wake_on_change=not backoff.failures, since=seen)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the probes and followers (engines are left running for adoption)."""
        await self._tasks.close()

    async def check_vpns(self) -> None:
        """At start: raise :class:`~.vpn.VpnError` for a VPN container that does not publish its
        share of PORT_RANGE_HOST. Docker not answering leaves the question to the passes."""
        await self.backend.vpn.check()

    def wake(self) -> None:
        """Run the next pass now (a VPN container changed)."""
        self._woken.set()

    async def reconcile(self) -> None:
        """One pass: sync the pool with the backend, then apply the plan."""
        async with self._pass:
            await self.backend.sync()
            if not self.adopted.is_set():
                log.info("fleet_adopted", engines=len(self._pool.snapshot()))
                self.adopted.set()
            await self._apply_plan()

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
            removal_failures=self.backend.removal_failures,
            last_error=self.last_error,
            vpns=self.vpn_status(),
        )

    def vpn_status(self) -> tuple[VpnStatus, ...]:
        """Per VPN container: its id, whether it is connected and why not, its forwarded port,
        its share of the ports and the engines behind it (empty outside VPN mode)."""
        return self.backend.vpn.status()

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
                await self.backend.remove_container(engine_id, engine.name, engine.state.value)
        # A removal that failed left its container, and its place, taken.
        await self.backend.provision(plan.start)
        self.backend.publish()

    def _retire_for_forwarding(self) -> None:
        """Engines on a VPN's old forwarded port, or idle ones whose replacement is to get the
        new one, leave selection; busy ones' channels fail over, and the plan replaces them."""
        for engine_id in self.backend.vpn.to_retire():
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
