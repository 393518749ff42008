"""The Docker backend: one Docker endpoint's side of the fleet.

It lists the endpoint's engine containers and makes the pool agree with them (``adoption.py``:
adopts the containers it finds by their labels, never wipes them, removes exited, stranded or
unadoptable ones), starts engines through its provisioner (the admission point: slots and its own
ports), and removes the ones the plan lets go. Its Docker event follower (``events.py``) tells it
at once of engine containers that die, disappear or turn unhealthy, and of Docker going away and
coming back (``event_reactions.py`` applies them); after every reconnect it relists (a full pass of
the fleet loop) before it applies events. In VPN mode its VPN containers (``vpns.py``) decide where
its engines' network namespaces are.

The loop, the plan and the readiness probes are shared (``reconciler.py``, ``readiness.py``); the
backend is the only part of the fleet that knows the engines are Docker containers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..docker_endpoints import DockerEndpoint
from ..engines.client import EngineClient
from ..engines.model import Engine
from ..engines.pool import EnginePool
from ..engines.recovery import LeftSessions
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from ..tasks import Supervisor
from .admission import Admission
from .adoption import Adoption
from .blocks import Blocks
from .breaker import CircuitBreaker
from .docker import UNREACHABLE, DockerEngines, FleetError
from .docker_vpn import VpnSide
from .endpoints import FleetSlots
from .event_reactions import EventReactions
from .events import EventFollower, event_filter
from .ports import PortAllocator
from .provisioner import Provisioned, Provisioner
from .readiness import ReadinessProbes
from .specs import LABEL_ENDPOINT, ContainerRecord, instance_filter

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
        self._docker = docker
        self._pool = pool
        self._probes = probes
        self._relist = relist
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
        self.reactions = EventReactions(
            name=self.name,
            pool=pool,
            admission=self.admission,
            blocks=self._blocks,
            drop=self._drop,
        )
        self.adoption = Adoption(
            backend=self,
            name=self.name,
            settings=settings,
            pool=pool,
            admission=self.admission,
            ports=self.ports,
            vpn=self.vpn,
            probes=probes,
            reactions=self.reactions,
            adopted=adopted,
            left_sessions=left_sessions,
        )
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
        records = self.reactions.with_deaths(ours)
        await self.adoption.sync(self.admission.heal(listing, records))

    async def provision(self, wanted: int) -> Provisioned:
        """Start up to ``wanted`` engines, no more than the admission point has room for."""
        return await self.provisioner.provision(min(wanted, self.admission.room()))

    def publish(self) -> None:
        """Publish what blocks provisioning (the breaker's state, no VPN connected)."""
        self.provisioner.publish()
        self.vpn.publish_block(self.ports)

    # --- Docker events (``event_reactions.py``) -----------------------------------------------

    async def relist(self) -> None:
        """List the containers again and act on what changed (after Docker events were missed)."""
        await self._relist()

    def engine_died(self, container_id: str, reason: str) -> None:
        """The container stopped (died, killed, out of memory): out of the pool at once. Its port
        stays held until the container is removed."""
        self._drop(container_id, reason)

    def container_stopped(self, container_id: str, action: str) -> None:
        """An engine's container died (``die``, ``oom``): out of the pool now, so its claims are
        lost and fail over; its port stays held until the container is gone."""
        self.reactions.stopped(container_id, action)

    def container_destroyed(self, container_id: str) -> None:
        """An engine's container is gone: out of the pool, and its port is free again."""
        self.reactions.destroyed(container_id)

    def container_unhealthy(self, container_id: str) -> None:
        """Docker's health check of an engine failed: no new claims, its claims are lost."""
        self.reactions.unhealthy(container_id)

    def docker_reachable(self, reachable: bool, reason: str = "", retry_in_s: float = 0) -> None:
        """Docker answered, or could not be reached (see :meth:`EventReactions.reachable`)."""
        self.reactions.reachable(reachable, reason, retry_in_s)

    @property
    def docker_up(self) -> bool:
        """Whether the endpoint's Docker answered last."""
        return self.reactions.docker_up

    @property
    def down_reason(self) -> str | None:
        """Why the endpoint's Docker cannot be reached, while it cannot."""
        return self.reactions.down_reason

    def engines(self) -> list[Engine]:
        """The pool's engines that live on this endpoint."""
        return [e for e in self._pool.engines() if e.endpoint == self.name]

    # --- engines leaving -----------------------------------------------------------------------

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
        self.reactions.removed(container_id)
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
        self.adoption.started(record, port)
