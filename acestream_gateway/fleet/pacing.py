"""When the fleet loop runs its next pass.

A healthy loop sleeps its interval (HEALTH_CHECK_INTERVAL_S), or less when the provisioning
breaker lets a trial through sooner, and wakes early when the pool changes (a claim took a spare)
or when a part of the fleet asks (:meth:`Pacing.wake`: a VPN container changed, a Swarm task is
awaited). A loop backing off after a failure sleeps its backoff whole.
"""

from __future__ import annotations

import asyncio

from ..engines.pool import EnginePool
from .breaker import CircuitBreaker


class Pacing:
    """The sleep between two passes of the fleet loop; see the module docstring."""

    def __init__(self, *, pool: EnginePool, interval_s: float, breaker: CircuitBreaker) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._breaker = breaker
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Run the next pass now."""
        self._woken.set()

    def next_pass_in(self) -> float:
        """The interval, or sooner when the breaker lets a trial through sooner."""
        delay = self._interval_s
        eta = self._breaker.eta_s()
        return delay if eta is None or eta <= 0 else min(delay, eta)

    async def sleep(self, delay_s: float, *, wake_on_change: bool, since: int = -1) -> None:
        """Sleep ``delay_s``, or when healthy until the pool changes (a claim took a spare) or a
        part of the fleet asks (:meth:`wake`); a change after the pool's version ``since`` (taken
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
