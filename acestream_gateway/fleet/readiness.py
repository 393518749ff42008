"""Readiness probes of new engines: each STARTING engine is probed until it answers (READY) or
its startup timeout passes (UNHEALTHY, so the plan removes it). Whatever the outcome, the backend
that started the engine is told (``on_done``), so its breaker counts the start.

The probes run as tasks of the fleet's supervisor; an engine that leaves the pool has its probe
cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..engines.client import EngineClient
from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..logs import get_logger
from ..metrics import Metrics
from ..tasks import Supervisor
from .health import EngineNeverReady, wait_ready

log = get_logger(__name__)

_PROBE_INTERVAL_S = 0.5

StartDone = Callable[[Engine, bool, str], None]
"""Told when a start ends: the engine, whether it became ready, and why not."""


class ReadinessProbes:
    """One probe task per STARTING engine; see the module docstring."""

    def __init__(
        self,
        *,
        pool: EnginePool,
        client: EngineClient,
        metrics: Metrics,
        tasks: Supervisor,
        startup_timeout_s: float,
        on_done: StartDone,
    ) -> None:
        self._pool = pool
        self._client = client
        self._metrics = metrics
        self._tasks = tasks
        self._timeout_s = startup_timeout_s
        self._on_done = on_done
        self._probes: dict[str, asyncio.Task[None]] = {}

    def probe(self, engine: Engine) -> None:
        """Probe ``engine`` until it is ready or its startup timeout passes."""
        task = self._tasks.spawn(self._wait_ready(engine), name=f"readiness probe {engine.name}")
        self._probes[engine.id] = task
        task.add_done_callback(lambda done: self._probe_ended(engine.id, done))

    def cancel(self, engine_id: str) -> None:
        """The engine left the pool: its probe, if any, stops."""
        probe = self._probes.pop(engine_id, None)
        if probe is not None:
            probe.cancel()

    def _probe_ended(self, engine_id: str, task: asyncio.Task[None]) -> None:
        if self._probes.get(engine_id) is task:
            del self._probes[engine_id]

    async def _wait_ready(self, engine: Engine) -> None:
        started = time.monotonic()
        try:
            version = await wait_ready(
                self._client,
                engine.address,
                timeout_s=self._timeout_s,
                interval_s=_PROBE_INTERVAL_S,
            )
        except EngineNeverReady as exc:
            log.warning("engine_start_timeout", engine=engine.name, timeout_s=self._timeout_s)
            self._start_failed(engine, str(exc))
        except Exception as exc:  # a crashed probe must not leave the engine STARTING for ever
            log.exception("engine_probe_crashed", engine=engine.name)
            self._start_failed(engine, f"its readiness probe crashed: {exc!r}")
        else:
            if self._pool.get(engine.id) is None:
                return
            self._pool.set_state(engine.id, EngineState.READY)
            self._metrics.engine_start_duration.observe(time.monotonic() - started)
            log.info("engine_ready", engine=engine.name, version=version)
            self._on_done(engine, True, "")

    def _start_failed(self, engine: Engine, reason: str) -> None:
        """The plan removes it (UNHEALTHY and empty); the backend's breaker counts it."""
        self._pool.set_state(engine.id, EngineState.UNHEALTHY)
        self._on_done(engine, False, reason)
