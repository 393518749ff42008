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
from collections.abc import Mapping

from ..engines.client import EngineClient
from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..engines.recovery import LeftSessions
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from ..tasks import Backoff, Supervisor
from .actions import ActionRefused, FleetActions
from .admission import Admission
from .blocks import EndpointBlocks
from .breaker import CircuitBreaker
from .docker import DockerEngines, FleetError
from .docker_backend import DockerBackend
from .endpoints import EndpointRoom, FleetSlots, spread
from .events import EventFollower
from .health import HealthProber
from .plan import plan_fleet
from .ports import PortAllocator
from .provisioner import Provisioner
from .readiness import ReadinessProbes
from .status import EndpointStatus, FleetStatus, endpoint_status, fleet_status, vpn_status
from .swarm_backend import SwarmBackend
from .vpns import Vpns, VpnStatus

__all__ = ["ActionRefused", "EndpointStatus", "FleetStatus", "Reconciler"]

log = get_logger(__name__)


class Reconciler:
    """Keeps the fleet of engines as the plan wants it; owns its probe and follower tasks."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines | None = None,
        pool: EnginePool,
        client: EngineClient,
        metrics: Metrics | None = None,
        left_sessions: LeftSessions | None = None,
        dockers: Mapping[str, DockerEngines] | None = None,
    ) -> None:
        """``docker``: the client of the one default endpoint; ``dockers``: with DOCKER_ENDPOINTS,
        the client of each endpoint by name (an endpoint without one, whose client could not be
        made, is left out). ``left_sessions``: what the start knows of sessions a dead gateway
        left on engines; an engine it cannot account for is adopted out of selection and
        replaced."""
        self._settings = settings
        self.metrics = metrics or Metrics()
        self._pool = pool
        self._tasks = Supervisor("fleet reconciler")
        self._pass = asyncio.Lock()
        self._unhealthy_since: dict[str, float] = {}
        self._woken = asyncio.Event()
        self._down: dict[str, FleetError] = {}  # endpoints whose Docker failed the latest pass
        self.adopted = asyncio.Event()
        self.last_error: str | None = None
        self.probes = ReadinessProbes(
            pool=pool,
            client=client,
            metrics=self.metrics,
            tasks=self._tasks,
            startup_timeout_s=settings.engine_startup_timeout_s,
            on_done=lambda engine, ready, why: self.backend_of(engine).start_done(
                engine, ready, why
            ),
        )
        clients = dict(dockers or {})
        endpoints = [e for e in settings.endpoints() if e.name in clients or not e.named]
        if docker is not None and not settings.docker_endpoints:
            clients[endpoints[0].name] = docker
        endpoints = [e for e in endpoints if e.name in clients]
        if not endpoints:
            raise ValueError("no Docker endpoint has a client")
        blocks = EndpointBlocks(pool, [e.name for e in endpoints])
        slots = FleetSlots(settings.max_active_replicas)
        kind = SwarmBackend if settings.fleet_backend == "swarm" else DockerBackend
        self.backends = {
            e.name: kind(
                settings=settings,
                docker=clients[e.name],
                pool=pool,
                client=client,
                metrics=self.metrics,
                probes=self.probes,
                adopted=self.adopted,
                relist=self.reconcile,
                wake=self.wake,
                left_sessions=left_sessions,
                endpoint=e,
                blocks=blocks.of(e.name),
                slots=slots,
            )
            for e in endpoints
        }
        if kind is DockerBackend and len(endpoints) > 1:
            # Rule 6 over several endpoints: one that was not listed yet counts its whole share
            # (until its first listing heals its ledger), so the others never take its places.
            for backend in self.backends.values():
                backend.admission.unlisted = True
        self.blocks = blocks
        self.slots = slots
        self.backend = next(iter(self.backends.values()))  # the first (the only one by default)
        self.actions = FleetActions(settings=settings, pool=pool, fleet=self, passes=self._pass)
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

    def backend_of(self, engine: Engine) -> DockerBackend:
        """The backend of the endpoint ``engine`` lives on."""
        return self.backends.get(engine.endpoint, self.backend)

    def placement(self) -> list[EndpointRoom]:
        """Every endpoint as the placement policy sees it (with one, it is always the place)."""
        return [
            EndpointRoom(b.name, self._placeable(b), b.admission.room())
            for b in self.backends.values()
        ]

    def _placeable(self, backend: DockerBackend) -> bool:
        """Whether new engines may go to ``backend``'s endpoint: it is not known to be down."""
        return backend.docker_up or len(self.backends) == 1

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """The reconcile loop and the health probes; cancel it to stop (engines keep running)."""
        self._tasks.spawn_loop(self.health.run, name="engine health probes")
        for backend in self.backends.values():
            backend.spawn_followers(self._tasks)
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
                        for backend in self.backends.values():
                            if backend.name not in self._down:
                                backend.docker_reachable(False, exc.message, delay)
                except Exception as exc:  # the guard of a long-lived loop: log, back off, go on
                    delay = backoff.next()
                    log.exception("fleet_reconcile_crashed", retry_in_s=delay)
                    self.last_error = repr(exc)
                else:
                    for backend in self.backends.values():
                        if backend.name not in self._down:
                            backend.docker_reachable(True)
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
        for backend in self.backends.values():
            await backend.vpn.check()

    def wake(self) -> None:
        """Run the next pass now (a VPN container changed)."""
        self._woken.set()

    async def reconcile(self) -> None:
        """One pass: sync the pool with the backend, then apply the plan."""
        async with self._pass:
            self._down = {}
            for backend in self.backends.values():
                try:
                    await backend.sync()
                except FleetError as exc:
                    self._endpoint_failed(backend, exc)
                else:
                    if len(self.backends) > 1:
                        backend.docker_reachable(True)  # one endpoint: the loop tells
            if len(self._down) == len(self.backends):
                raise next(iter(self._down.values()))
            if not self.adopted.is_set():
                log.info("fleet_adopted", engines=len(self._pool.snapshot()))
                self.adopted.set()
            await self._apply_plan()

    def _endpoint_failed(self, backend: DockerBackend, exc: FleetError) -> None:
        """One endpoint's Docker failed during a pass: with one endpoint the pass fails (the loop
        backs off); with several, that endpoint sits out the pass (blocked when unreachable, so
        new engines go to the others) and the pass goes on."""
        if len(self.backends) == 1:
            raise exc
        self._down[backend.name] = exc
        if exc.unreachable:
            backend.docker_reachable(False, exc.message, self._settings.health_check_interval_s)
        else:
            log.warning("fleet_endpoint_pass_failed", endpoint=backend.name, reason=exc.message)

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
        return fleet_status(list(self.backends.values()), self._pool, self.blocks, self.last_error)

    def endpoint_status(self) -> tuple[EndpointStatus, ...]:
        """Each Docker endpoint: reachability, engines, room and ports."""
        return endpoint_status(list(self.backends.values()), self._pool, self.blocks)

    def vpn_status(self) -> tuple[VpnStatus, ...]:
        """Per VPN container: its id, whether it is connected and why not, its forwarded port,
        its share of the ports and the engines behind it (empty outside VPN mode)."""
        return vpn_status(list(self.backends.values()))

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
            backend = None if engine is None else self.backend_of(engine)
            if engine is None or backend is None or backend.name in self._down:
                continue
            try:
                await backend.remove_container(engine_id, engine.name, engine.state.value)
            except FleetError as exc:
                self._endpoint_failed(backend, exc)
        # A removal that failed left its container, and its place, taken.
        rooms = [r for r in self.placement() if r.name not in self._down]
        counts = spread(rooms, plan.start, self.slots.room())
        for backend in self.backends.values():
            if backend.name in self._down or not self._placeable(backend):
                continue  # found gone while others started: the next pass places elsewhere
            try:
                await backend.provision(counts.get(backend.name, 0))
            except FleetError as exc:
                self._endpoint_failed(backend, exc)
        for backend in self.backends.values():
            backend.publish()

    def _retire_for_forwarding(self) -> None:
        """Engines on a VPN's old forwarded port, or idle ones whose replacement is to get the
        new one, leave selection; busy ones' channels fail over, and the plan replaces them."""
        retiring = [i for b in self.backends.values() for i in b.vpn.to_retire()]
        for engine_id in retiring:
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
