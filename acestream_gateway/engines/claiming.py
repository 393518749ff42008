"""The data path's claims: an engine chosen and the claim registered in one step under the
pool's lock, else a place in the queue of waiting claims (:mod:`.waiting`), else a refusal.

A claim that finds no engine waits, first come first served, while an engine may still come (one
is starting, or the fleet may start one); the pool serves the queue at every change that adds
room (:meth:`ClaimDesk.serve`). It is refused at once when none can come: the fleet cannot
provision now, or is full (a failover's patient claim waits out a provisioning block, and a full
fleet while an engine in it is leaving), and after ``provision_wait_s`` when none came in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from .claims import Claim
from .model import Engine, EngineState
from .provisioning import Blocked, BlockedReason
from .waiting import WaitQueue

if TYPE_CHECKING:
    from .pool import EnginePool


class NoCapacity(Exception):
    """No engine can take a new channel now; ``retry_after_s`` says when to try again.

    ``code`` is the provisioning block behind the refusal (None: no engine became ready in time).
    """

    def __init__(
        self, reason: str, retry_after_s: float, code: BlockedReason | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.code = code


class ClaimDesk:
    """The pool's claims as the data path makes them; see the module docstring. ``choose`` and
    ``register`` are the pool's own synchronous steps (an engine for a content avoiding some,
    a pending claim on it)."""

    def __init__(
        self,
        pool: EnginePool,
        choose: Callable[[str | None, AbstractSet[str]], Engine | None],
        register: Callable[[Engine, str], Claim],
        on_change: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._choose = choose
        self._register = register
        self._lock = asyncio.Lock()
        self._queue: WaitQueue[Claim] = WaitQueue(on_change)

    async def claim(
        self, content_key: str, exclude: Iterable[str], wait_for_provisioning: bool
    ) -> Claim:
        """See :meth:`.pool.EnginePool.claim`."""
        pool = self._pool
        avoid = frozenset(exclude)
        deadline = pool.clock() + pool.provision_wait_s
        while True:
            async with self._lock:
                engine = self._choose(content_key, avoid)
                if engine is not None:
                    return self._register(engine, content_key)
                refusal = self.refusal(wait_for_provisioning)
                if refusal is not None:
                    raise refusal
                waiter = self._queue.join(content_key, avoid, patient=wait_for_provisioning)
            claim = await self._queue.turn(waiter, max(0.0, deadline - pool.clock()))
            if claim is None:
                block = pool.provisioning.current()
                raise NoCapacity(
                    f"no engine became ready within {pool.provision_wait_s:g} s",
                    retry_after_s=max(pool.provision_wait_s, 5.0),
                    code=None if block is None else block.reason,
                )
            if self._usable(claim):
                return claim
            # Handed over when the change made room, its engine went bad or away before the
            # waiter ran: never give the caller a claim on an engine it must not use.
            claim.release()

    def waiting(self) -> int:
        return len(self._queue)

    def serve(self) -> None:
        """Hand the room a change made to the waiters, refuse those left without hope."""
        self._queue.serve(self._place, self._pool.has_room, self.refusal)

    def blocked(self) -> Blocked | None:
        """See :meth:`.pool.EnginePool.blocked`."""
        return self._pool.provisioning.current() or self._full()

    def refusal(self, patient: bool) -> NoCapacity | None:
        """Why a claim that finds no engine must not wait, or None when one may still come."""
        engines = self._pool.engines()
        if any(e.state is EngineState.STARTING for e in engines):
            return None  # an engine on its way may take the channel: wait for it
        # A patient claim (a failover) waits out a provisioning block, and a full fleet while
        # an engine in it is leaving (the fleet removes it to make room).
        block = self._full_for_good(engines) if patient else self.blocked()
        if block is None:
            return None
        return NoCapacity(block.message, self._pool.provisioning.retry_after_s(block), block.reason)

    def _full(self) -> Blocked | None:
        max_engines = self._pool.max_engines
        if len(self._pool.engines()) < max_engines:
            return None
        message = f"all {max_engines} engines (MAX_ACTIVE_REPLICAS) are busy"
        return Blocked(BlockedReason.MAX_CAPACITY, message)

    def _full_for_good(self, engines: list[Engine]) -> Blocked | None:
        """The fleet is full and no engine in it is leaving to make room."""
        going = (EngineState.UNHEALTHY, EngineState.DRAINING)
        if any(e.state in going for e in engines):
            return None
        return self._full()

    def _place(self, content_key: str, avoid: frozenset[str]) -> Claim | None:
        engine = self._choose(content_key, avoid)
        return None if engine is None else self._register(engine, content_key)

    def _usable(self, claim: Claim) -> bool:
        engine = claim.engine
        return (
            self._pool.get(engine.id) is engine
            and engine.state is EngineState.READY
            and not claim.lost.is_set()
        )
