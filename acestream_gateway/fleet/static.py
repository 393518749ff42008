"""The static fleet: engines the gateway uses but does not run, listed by ``ENGINE_URLS``.

Someone else starts and stops these engines (one on a NAS, several from another tool, emulators
in a benchmark), so the gateway never creates, removes or replaces one and never speaks to Docker.
Otherwise they are engines like any other: claimed through the pool and failed over when lost.
Each starts STARTING and is READY once it answers; the health prober (``health.py``) probes it
like a managed engine, and because nothing can replace one that stops answering it keeps probing
it while it is UNHEALTHY and makes it READY again at its first answer.

Such a fleet never grows, so provisioning is blocked for good with ``max_capacity``: a channel
that finds no room is refused at once instead of waiting for an engine that will never come.
"""

from __future__ import annotations

from ..engine_urls import EngineUrl
from ..engines.client import EngineClient
from ..engines.model import Engine, EngineAddress, EngineState
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..settings import Settings
from ..tasks import Supervisor
from .health import EngineNeverReady, HealthProber, wait_ready

log = get_logger(__name__)

_PROBE_INTERVAL_S = 0.5
# Shown to players refused for want of room, so it names no address.
FIXED_FLEET = "the engines are the fixed ENGINE_URLS list: the gateway starts no engine of its own"


def static_engine(url: EngineUrl) -> Engine:
    """The pool's engine for one URL, named after it (the same name on every start)."""
    return Engine(
        id=url.name,
        name=url.name,
        address=EngineAddress(url.host, url.port),
        endpoint="static",
    )


class StaticFleet:
    """Puts the ``ENGINE_URLS`` engines in the pool and owns their probes; see the module
    docstring."""

    def __init__(self, *, settings: Settings, pool: EnginePool, client: EngineClient) -> None:
        self._pool = pool
        self._client = client
        self.engines = [static_engine(url) for url in settings.engine_urls]
        self._ready_timeout_s = settings.health_probe_timeout_s
        self.health = HealthProber.configured(settings, pool=pool, client=client, revive=True)
        self._tasks = Supervisor("static fleet")

    def start(self) -> None:
        """The engines in the pool as STARTING, their readiness and health probes running."""
        self._pool.block(BlockedReason.MAX_CAPACITY, FIXED_FLEET)
        for engine in self.engines:
            self._pool.add(engine)
            self._tasks.spawn(self._wait_ready(engine), name=f"readiness probe {engine.name}")
        self._tasks.spawn_loop(self.health.run, name="engine health probes")
        log.info("static_fleet_started", engines=[e.name for e in self.engines])

    async def close(self) -> None:
        """Stop probing (the engines are not ours: they are left as they are)."""
        await self._tasks.close()

    async def _wait_ready(self, engine: Engine) -> None:
        """READY at its first answer; UNHEALTHY if none comes in time, for the health prober to
        bring back. Never left STARTING: new channels would wait for it."""
        version: str | None = None
        try:
            version = await wait_ready(
                self._client,
                engine.address,
                timeout_s=self._ready_timeout_s,
                interval_s=_PROBE_INTERVAL_S,
            )
        except EngineNeverReady:
            log.warning("engine_unreachable", engine=engine.name, timeout_s=self._ready_timeout_s)
            return
        finally:
            state = EngineState.UNHEALTHY if version is None else EngineState.READY
            self._pool.set_state(engine.id, state)
        log.info("engine_ready", engine=engine.name, version=version)
