"""Operators' fleet actions: start an engine now, drain one, remove one. Each either applies or
raises :class:`ActionRefused` with the reason (``http/manage.py`` maps it to an answer). Starts
go to the endpoint the placement policy chooses, removals to the engine's own; both go through
its backend and run inside the fleet's pass lock, so they never overlap
a reconcile pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..settings import Settings
from .docker_backend import DockerBackend
from .endpoints import EndpointRoom, choose_endpoint


class Fleet(Protocol):
    """What the actions need of the fleet: its backends and where new engines go."""

    @property
    def backends(self) -> Mapping[str, DockerBackend]: ...

    def backend_of(self, engine: Engine) -> DockerBackend: ...

    def placement(self) -> list[EndpointRoom]: ...

    @property
    def adopted(self) -> asyncio.Event: ...


class ActionRefused(Exception):
    """An operator's fleet action cannot apply; ``unknown``: no such engine (else it conflicts
    with the engine's state or the fleet's)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unknown = unknown


class FleetActions:
    """The operators' actions on the fleet; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        pool: EnginePool,
        fleet: Fleet,
        passes: asyncio.Lock,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._fleet = fleet
        self._pass = passes

    async def start_engine(self) -> Engine:
        """Start one engine now (the plan may reap it later as a surplus spare, after the grace
        period). Raises :class:`ActionRefused` when none can be started.

        Not before the fleet listed its engines since the start (waited for up to
        HEALTH_CHECK_INTERVAL_S): until then how many of the gateway's engines run is not known,
        and a start could pass MAX_ACTIVE_REPLICAS or take the name of an engine still running."""
        await self._listed()
        self._placed()  # a quick answer before waiting for a pass under way
        async with self._pass:
            # Chosen again once the pass is over: it may have found the endpoint gone.
            name = self._placed()
            result = await self._fleet.backends[name].provisioner.provision(1)
        new = [e for e in map(self._pool.get, (r.id for r in result.started)) if e is not None]
        if new:
            return new[0]
        if result.refused is not None:
            raise ActionRefused(result.refused.message)
        block = self._pool.blocked()
        raise ActionRefused(block.message if block else "no engine could be started")

    async def _listed(self) -> None:
        try:
            await asyncio.wait_for(
                self._fleet.adopted.wait(), self._settings.health_check_interval_s
            )
        except TimeoutError:
            raise ActionRefused(
                "the fleet has not listed its engines since the start yet (is Docker reachable? "
                "GET /orchestrator/status says); try again once it has"
            ) from None

    def _placed(self) -> str:
        """The endpoint a new engine goes to now; :class:`ActionRefused` when there is none (the
        admission point has the last word)."""
        rooms = self._fleet.placement()
        if sum(r.free for r in rooms) < 1:
            limit = self._settings.max_active_replicas
            raise ActionRefused(f"the fleet is at MAX_ACTIVE_REPLICAS ({limit})")
        name = choose_endpoint(rooms)
        if name is None:
            raise ActionRefused("no Docker endpoint with room can be reached")
        return name

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
            removed = await self._fleet.backend_of(engine).remove_container(
                engine.id, engine.name, "removed by an operator"
            )
        if not removed:
            raise ActionRefused(f"Docker did not remove engine {engine.name}; retried later")
        return engine

    def _known(self, engine_id: str) -> Engine:
        """The engine by its id (the container's) or its name."""
        engine = self._pool.get(engine_id) or next(
            (e for e in self._pool.engines() if e.name == engine_id), None
        )
        if engine is None:
            raise ActionRefused(f"no engine {engine_id!r}", unknown=True)
        return engine
