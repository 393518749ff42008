"""Following the fleet's plan in one pass, over every endpoint.

The plan (``plan.py``) is pure; this piece feeds it and carries it out. Before planning, engines a
VPN's forwarded port moved away from leave selection, and it notes since when each engine is
unhealthy (the plan waits UNHEALTHY_ENGINE_TIMEOUT_S before it replaces one). Then every engine to
remove leaves selection before the first await, and is removed by its own endpoint's backend
before any start, since a start may need its place (rule 6). The starts are spread over the
endpoints that took part in the pass by the placement policy (``endpoints.spread``), each
endpoint's backend starting its share; an endpoint whose Docker fails sits out the rest of the
pass (``pass_failures.py``). Last, each backend publishes what blocks its provisioning.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..logs import get_logger
from ..settings import Settings
from .docker import FleetError
from .docker_backend import DockerBackend
from .endpoints import EndpointRoom, FleetSlots, spread
from .pass_failures import PassFailures
from .plan import plan_fleet

log = get_logger(__name__)


class Fleet(Protocol):
    """What following the plan needs of the fleet: its backends and where new engines go."""

    @property
    def backends(self) -> Mapping[str, DockerBackend]: ...

    def backend_of(self, engine: Engine) -> DockerBackend: ...

    def placement(self) -> list[EndpointRoom]: ...

    def placeable(self, backend: DockerBackend) -> bool: ...


class PlanFollower:
    """Plans and applies the plan, once per pass; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        pool: EnginePool,
        fleet: Fleet,
        slots: FleetSlots,
        failures: PassFailures,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._fleet = fleet
        self._slots = slots
        self._failures = failures
        self._unhealthy_since: dict[str, float] = {}

    async def apply(self) -> None:
        """Plan over the pool as it is now, then remove, then start."""
        now = time.monotonic()
        self._retire_for_forwarding()
        self._track_unhealthy(now)
        settings = self._settings
        plan = plan_fleet(
            self._pool.snapshot(),
            min_replicas=settings.min_replicas,
            max_replicas=settings.max_active_replicas,
            grace_s=settings.engine_grace_period_s,
            now=now,
            unhealthy_since=self._unhealthy_since,
            unhealthy_wait_s=settings.unhealthy_engine_timeout_s,
            waiting=self._pool.waiting(),
        )
        for engine_id in plan.remove:  # out of selection before the first await
            engine = self._pool.get(engine_id)
            if engine is not None and engine.state is not EngineState.UNHEALTHY:
                self._pool.set_state(engine_id, EngineState.DRAINING)
        for engine_id in plan.remove:  # removed first: a start may need the place
            await self._remove(engine_id)
        await self._start(plan.start)
        for backend in self._fleet.backends.values():
            backend.publish()

    async def _remove(self, engine_id: str) -> None:
        engine = self._pool.get(engine_id)
        backend = None if engine is None else self._fleet.backend_of(engine)
        if engine is None or backend is None or self._failures.sits_out(backend.name):
            return
        try:
            await backend.remove_container(engine_id, engine.name, engine.state.value)
        except FleetError as exc:
            self._failures.endpoint_failed(backend, exc)

    async def _start(self, wanted: int) -> None:
        # A removal that failed left its container, and its place, taken.
        rooms = [r for r in self._fleet.placement() if not self._failures.sits_out(r.name)]
        counts = spread(rooms, wanted, self._slots.room())
        for backend in self._fleet.backends.values():
            if self._failures.sits_out(backend.name) or not self._fleet.placeable(backend):
                continue  # found gone while others started: the next pass places elsewhere
            try:
                await backend.provision(counts.get(backend.name, 0))
            except FleetError as exc:
                self._failures.endpoint_failed(backend, exc)

    def _retire_for_forwarding(self) -> None:
        """Engines on a VPN's old forwarded port, or idle ones whose replacement is to get the
        new one, leave selection; busy ones' channels fail over, and the plan replaces them."""
        retiring = [i for b in self._fleet.backends.values() for i in b.vpn.to_retire()]
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
