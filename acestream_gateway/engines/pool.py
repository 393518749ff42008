"""The engine pool: which engines exist, how loaded they are, and atomic claims on them.

Choosing an engine and counting the new stream against it happen in one step: ``claim`` holds the
pool's ``asyncio.Lock`` while it selects, and between the choice and the registration of the
pending claim there is no ``await``, so no burst of requests can overfill an engine. Every mutation
is synchronous for the same reason. The fleet reconciler feeds engines in and reads snapshots;
the data path claims and releases. The decisions themselves are pure functions below.

A claim that finds no engine waits in a queue (``waiting.py``), first come first served. A change
that adds room (an engine turned ready, a claim released) hands that room to the waiters in
order, in the same synchronous step as the change (so nothing runs between the choice and the
registration, as under the lock): only the waiters that get an engine are woken, plus the ones a
change refuses. The number of waiting claims is the fleet's demand (``waiting``).

The pool keeps the engines, their states and health, and chooses; the claims it registers are
kept in ``claims.py``'s book, and how a claim is made, queued or refused is ``claiming.py``'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from .claiming import ClaimDesk, NoCapacity
from .claims import Claim, ClaimBook, ClaimState
from .model import Engine, EngineState
from .provisioning import Blocked, BlockedReason, Provisioning

__all__ = [
    "Capacity",
    "Claim",
    "ClaimState",
    "EngineLoad",
    "EnginePool",
    "NoCapacity",
    "choose_engine",
    "count_capacity",
]


@dataclass(frozen=True, slots=True)
class Capacity:
    """Capacity counted in engines (rule 1): ``used`` never exceeds ``total``."""

    total: int
    used: int
    available: int
    streams: int
    max_streams_per_engine: int


def choose_engine(
    engines: Iterable[Engine], loads: Mapping[str, int], max_streams: int
) -> Engine | None:
    """The ready engine with room that carries the fewest streams (oldest first on ties)."""
    candidates = [
        e for e in engines if e.state is EngineState.READY and loads.get(e.id, 0) < max_streams
    ]
    return min(candidates, key=lambda e: (loads.get(e.id, 0), e.created_at, e.name), default=None)


def count_capacity(
    engines: Iterable[Engine], loads: Mapping[str, int], max_streams: int
) -> Capacity:
    """Engines that can be used or carry streams are the total; those carrying any are used."""
    counted = [e for e in engines if e.state is EngineState.READY or loads.get(e.id, 0) > 0]
    used = sum(1 for e in counted if loads.get(e.id, 0) > 0)
    streams = sum(loads.get(e.id, 0) for e in counted)
    return Capacity(len(counted), used, len(counted) - used, streams, max_streams)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One engine in a pool snapshot, with what the fleet needs to plan around it.

    ``moving``: its claims that were told to move (their channels need a new home)."""

    engine: Engine
    pending: int
    active: int
    idle_since: float | None
    moving: int = 0

    @property
    def streams(self) -> int:
        return self.pending + self.active


class EnginePool:
    """Engines and their claims, in the gateway's memory; see the module docstring.

    Two more rules live here because the data path and the fleet both need them. An engine never
    holds two claims of one content (the engine lets one session of a content live, so a second
    would kill the first). And an engine's health is counted here: probes and session starts
    report failures and successes, and ``failure_threshold`` failures in a row make it UNHEALTHY,
    which takes it out of selection at once and tells its claims they are lost.
    """

    def __init__(
        self,
        *,
        max_streams_per_engine: int,
        max_engines: int,
        provision_wait_s: float,
        failure_threshold: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_streams_per_engine = max_streams_per_engine
        self.max_engines = max_engines
        self.provision_wait_s = provision_wait_s
        self.failure_threshold = failure_threshold
        self.provisioning = Provisioning(clock)
        self.clock = clock
        self._engines: dict[str, Engine] = {}
        self._book = ClaimBook(self._noted, self._released)
        self._desk = ClaimDesk(self, self._choose, self._register, self._noted)
        self._idle_since: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._change = asyncio.Event()
        self.version = 0  # counts changes: a waiter that read it before may ask what it missed

    # --- the data path -------------------------------------------------------------------------

    async def claim(
        self,
        content_key: str,
        *,
        exclude: Iterable[str] = (),
        wait_for_provisioning: bool = False,
    ) -> Claim:
        """Claim a slot on an engine, waiting for the fleet to provision one if it can.

        ``exclude`` names engines not to use (a failover leaving one). The lock is held only while
        choosing and registering, never while waiting, so a claim that waits for a new engine does
        not hold up one that fits on a running engine; a waiting claim is queued and handed an
        engine when one has room (see the module docstring). Raises :class:`NoCapacity` at once
        when the fleet cannot grow, or after ``provision_wait_s`` when no engine became ready in
        time. With ``wait_for_provisioning`` (a failover) a provisioning block (Docker, a VPN
        reconnecting) is waited out like a starting engine, and so is a full fleet with a leaving
        engine in it (the fleet removes that engine to make room), instead of refused at once.
        """
        return await self._desk.claim(content_key, exclude, wait_for_provisioning)

    def waiting(self) -> int:
        """Claims waiting for an engine (new channels and failovers): the fleet's demand."""
        return self._desk.waiting()

    def has_room(self, content_key: str | None = None) -> bool:
        """Whether a new channel would be placed on an engine right now, without waiting."""
        return self._choose(content_key, set()) is not None

    def blocked(self) -> Blocked | None:
        """Why no engine can be added now, or None: the fleet's block that matters most, else a
        fleet at ``max_engines`` (the readiness probe and the status say the same as a refusal)."""
        return self._desk.blocked()

    def capacity(self) -> Capacity:
        return count_capacity(self._engines.values(), self._loads(), self.max_streams_per_engine)

    def note_failure(self, engine_id: str, reason: str) -> bool:
        """An engine failed a probe or a session start; True when this made it UNHEALTHY."""
        engine = self._engines.get(engine_id)
        if engine is None:
            return False
        count = self._failures.get(engine_id, 0) + 1
        self._failures[engine_id] = count
        if count >= self.failure_threshold and engine.state is EngineState.READY:
            self.set_state(engine_id, EngineState.UNHEALTHY)
            return True
        return False

    def note_success(self, engine_id: str) -> None:
        """An engine answered: its count of failures in a row starts over."""
        self._failures.pop(engine_id, None)

    def failures(self, engine_id: str) -> int:
        return self._failures.get(engine_id, 0)

    # --- the fleet -----------------------------------------------------------------------------

    def add(self, engine: Engine) -> None:
        self._engines[engine.id] = engine
        self._idle_since.setdefault(engine.id, self.clock())
        self._changed()

    def set_state(self, engine_id: str, state: EngineState) -> None:
        engine = self._engines.get(engine_id)
        if engine is not None and engine.state is not state:
            engine.state = state
            if state is EngineState.UNHEALTHY:
                self._lose(engine_id)
            self._changed()

    def retire(self, engine_id: str) -> None:
        """Take an engine out of selection and tell its claims to move (their channels fail
        over); the fleet removes it once it carries nothing."""
        engine = self._engines.get(engine_id)
        if engine is not None:
            if engine.state is not EngineState.UNHEALTHY:
                engine.state = EngineState.DRAINING
            self._lose(engine_id)
            self._changed()

    def remove(self, engine_id: str) -> None:
        """Forget an engine whose container is gone; its claims are lost and end with their
        streams."""
        if self._engines.pop(engine_id, None) is not None:
            self._idle_since.pop(engine_id, None)
            self._failures.pop(engine_id, None)
            self._lose(engine_id)
            self._changed()

    def get(self, engine_id: str) -> Engine | None:
        return self._engines.get(engine_id)

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def claims_on(self, engine_id: str) -> list[Claim]:
        return self._book.on(engine_id)

    def snapshot(self) -> list[EngineLoad]:
        """Every engine with its load, for planning and for status."""
        return [self._load_of(engine) for engine in self._engines.values()]

    def block(self, reason: BlockedReason, message: str, eta_s: float | None = None) -> None:
        """The fleet cannot provision now for ``reason``: new channels that need a new engine
        get a clear refusal at once."""
        if self.provisioning.set(reason, message, eta_s):
            self._changed()

    def unblock(self, reason: BlockedReason) -> None:
        if self.provisioning.lift(reason):
            self._changed()

    async def wait_changed(self, since: int = -1) -> None:
        """Return at the next change of engines or claims (the reconciler sleeps on this), at
        once when there was one after :attr:`version` was ``since``."""
        if 0 <= since != self.version:
            return
        await self._change.wait()

    # --- internals ------------------------------------------------------------------------------

    def _choose(self, content_key: str | None, avoid: AbstractSet[str]) -> Engine | None:
        taken = avoid | self._book.holding(content_key) if content_key is not None else avoid
        candidates = (e for e in self._engines.values() if e.id not in taken)
        return choose_engine(candidates, self._loads(), self.max_streams_per_engine)

    def _register(self, engine: Engine, content_key: str) -> Claim:
        claim = self._book.register(engine, content_key)
        self._idle_since.pop(engine.id, None)
        self._noted()
        return claim

    def _released(self, claim: Claim, engine_idle: bool) -> None:
        if engine_idle and claim.engine.id in self._engines:
            self._idle_since[claim.engine.id] = self.clock()
        self._changed()

    def _lose(self, engine_id: str) -> None:
        self._book.lose(engine_id)

    def _loads(self) -> dict[str, int]:
        return self._book.loads()

    def _load_of(self, engine: Engine) -> EngineLoad:
        claims, active, moving = self._book.counts(engine.id)
        return EngineLoad(engine, claims - active, active, self._idle_since.get(engine.id), moving)

    def _noted(self) -> None:
        """Wake the fleet, which follows every change of engines, claims and waiters (counted, so
        a pass that began before a change still sees it)."""
        self.version += 1
        self._change.set()
        self._change = asyncio.Event()

    def _changed(self) -> None:
        """A change that may add room or decide a refusal: serve the waiters, wake the fleet."""
        self._desk.serve()
        self._noted()
