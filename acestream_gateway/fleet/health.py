"""Health of engines: is a new engine ready yet, and does a running one still answer?

Engines hang without dying, so a container that runs proves nothing. Every READY engine is asked
``get_status`` on an interval, each probe under a short timeout of its own, probes of different
engines at the same time but bounded, so one hung engine never delays the verdict on another, and
each isolated, so whatever one engine answers (or whatever goes wrong probing it) is a failed
probe of that engine and never ends the round of the others. The
outcomes go to the pool, which counts failures in a row and turns the engine UNHEALTHY at the
threshold (no new claims, its claims lost, the plan replaces it). The reconciler owns the loop.

Engines the gateway cannot replace (the static fleet's) are probed while UNHEALTHY too, and the
first answer makes one READY again: the prober then runs with ``revive``.
"""

from __future__ import annotations

import asyncio
import time

from ..engines.client import EngineClient, EngineError
from ..engines.model import Engine, EngineAddress, EngineState
from ..engines.pool import EnginePool
from ..logs import get_logger
from ..settings import Settings

log = get_logger(__name__)


class EngineNeverReady(Exception):
    """A new engine did not answer its HTTP API within the startup timeout."""


async def wait_ready(
    client: EngineClient, address: EngineAddress, *, timeout_s: float, interval_s: float
) -> str:
    """Ask a starting engine for its version until it answers; its version string."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    return await client.version(address)
                except EngineError:
                    await asyncio.sleep(interval_s)
    except TimeoutError:
        raise EngineNeverReady(f"the engine did not answer within {timeout_s:g} s") from None


def probe_targets(engines: list[Engine], *, revive: bool = False) -> list[Engine]:
    """The engines a health round probes: the READY ones (others are starting or going), and with
    ``revive`` the UNHEALTHY ones too (nothing replaces them, so they must come back)."""
    probed = {EngineState.READY, EngineState.UNHEALTHY} if revive else {EngineState.READY}
    return [e for e in engines if e.state in probed]


class HealthProber:
    """Probes the pool's READY engines and reports each outcome to the pool; with ``revive`` also
    its UNHEALTHY ones, each READY again once it answers."""

    def __init__(
        self,
        *,
        pool: EnginePool,
        client: EngineClient,
        interval_s: float,
        timeout_s: float,
        concurrency: int,
        revive: bool = False,
    ) -> None:
        self._pool = pool
        self._client = client
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._revive = revive
        self._limit = asyncio.Semaphore(concurrency)

    @classmethod
    def configured(
        cls, settings: Settings, *, pool: EnginePool, client: EngineClient, revive: bool = False
    ) -> HealthProber:
        """A prober with the HEALTH_* settings (interval, probe timeout, concurrency)."""
        return cls(
            pool=pool,
            client=client,
            interval_s=settings.health_check_interval_s,
            timeout_s=settings.health_probe_timeout_s,
            concurrency=settings.health_probe_concurrency,
            revive=revive,
        )

    async def run(self) -> None:
        """Probe rounds, one every ``interval_s`` (start to start), until cancelled."""
        while True:
            started = time.monotonic()
            await self.probe_all()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def probe_all(self) -> None:
        """One round: every target engine probed once, concurrently within the bound."""
        async with asyncio.TaskGroup() as group:
            for engine in probe_targets(self._pool.engines(), revive=self._revive):
                group.create_task(self._probe(engine), name=f"health probe {engine.name}")

    async def _probe(self, engine: Engine) -> None:
        async with self._limit:
            try:
                await self._client.status(engine.address, self.timeout_s)
            except EngineError as exc:
                self._failed(engine, exc.reason)
            except Exception as exc:  # the guard of one probe: the round's other probes go on
                log.exception("engine_probe_crashed", engine=engine.name)
                self._failed(engine, f"its probe crashed: {type(exc).__name__}")
            else:
                self._pool.note_success(engine.id)
                if self._revive and engine.state is EngineState.UNHEALTHY:
                    self._revived(engine)

    def _revived(self, engine: Engine) -> None:
        if self._pool.get(engine.id) is engine:
            self._pool.set_state(engine.id, EngineState.READY)
            log.info("engine_recovered", engine=engine.name)

    def _failed(self, engine: Engine, reason: str) -> None:
        if engine.state is EngineState.UNHEALTHY:  # still down: said when it went
            self._pool.note_failure(engine.id, f"health probe failed: {reason}")
            log.debug("engine_still_unhealthy", engine=engine.name, reason=reason)
        elif self._pool.note_failure(engine.id, f"health probe failed: {reason}"):
            log.warning(
                "engine_unhealthy",
                engine=engine.name,
                reason=reason,
                failures=self._pool.failures(engine.id),
            )
        else:
            log.info("engine_probe_failed", engine=engine.name, reason=reason)
