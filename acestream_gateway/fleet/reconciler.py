"""The fleet loop: makes the engine pool agree with the backends, then follows the plan.

Each pass has every endpoint's backend (``docker_backend.py``) sync the pool with what runs
(adopting the engines it finds by their labels, never wiping them, and removing exited or broken
ones), then follows the plan (``plan_follower.py`` over the pure ``plan.py``): it keeps
``MIN_REPLICAS`` engines empty, replaces unhealthy engines and removes idle surplus, removals
before starts. Starting engines is the backends' provisioners' (several at once, behind a circuit
breaker, so an engine that cannot start is not recreated on every pass); probing running engines
is the health prober's, probing new ones the readiness probes' (``readiness.py``); operators'
actions are ``actions.py``'s. The loop owns their tasks. It runs guarded: it wakes on pool
changes, on its interval, when the breaker lets a trial through, or when a backend asks
(``pacing.py``); a failure of one engine is logged and retried on the next pass; a failure of an
endpoint's Docker is retried with backoff, or sits out the pass while other endpoints answer
(``pass_failures.py``); neither touches playing streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..engines.client import EngineClient
from ..engines.model import Engine
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
from .endpoints import EndpointRoom, FleetSlots
from .events import EventFollower
from .health import HealthProber
from .pacing import Pacing
from .pass_failures import PassFailures
from .plan_follower import PlanFollower
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
        self.adopted = asyncio.Event()
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
        self.failures = PassFailures(self.backends, retry_s=settings.health_check_interval_s)
        self.plan_follower = PlanFollower(
            settings=settings, pool=pool, fleet=self, slots=slots, failures=self.failures
        )
        self.pacing = Pacing(
            pool=pool, interval_s=settings.health_check_interval_s, breaker=self.breaker
        )

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

    @property
    def last_error(self) -> str | None:
        """Why the latest pass failed, or None when it succeeded."""
        return self.failures.last_error

    def backend_of(self, engine: Engine) -> DockerBackend:
        """The backend of the endpoint ``engine`` lives on."""
        return self.backends.get(engine.endpoint, self.backend)

    def placement(self) -> list[EndpointRoom]:
        """Every endpoint as the placement policy sees it (with one, it is always the place)."""
        return [
            EndpointRoom(b.name, self.placeable(b), b.admission.room())
            for b in self.backends.values()
        ]

    def placeable(self, backend: DockerBackend) -> bool:
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
                    self.failures.loop_failed(exc, delay, first=backoff.failures == 1)
                except Exception as exc:  # the guard of a long-lived loop: log, back off, go on
                    delay = backoff.next()
                    log.exception("fleet_reconcile_crashed", retry_in_s=delay)
                    self.failures.loop_crashed(exc)
                else:
                    self.failures.loop_succeeded(recovered=backoff.failures > 0)
                    backoff.reset()
                    delay = self.pacing.next_pass_in()
                await self.pacing.sleep(delay, wake_on_change=not backoff.failures, since=seen)
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
        self.pacing.wake()

    async def reconcile(self) -> None:
        """One pass: sync the pool with the backend, then apply the plan."""
        async with self._pass:
            self.failures.begin()
            for backend in self.backends.values():
                try:
                    await backend.sync()
                except FleetError as exc:
                    self.failures.endpoint_failed(backend, exc)
                else:
                    self.failures.endpoint_synced(backend)
            self.failures.raise_if_all_down()
            if not self.adopted.is_set():
                log.info("fleet_adopted", engines=len(self._pool.snapshot()))
                self.adopted.set()
            await self.plan_follower.apply()

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
