"""Claims, and the book of which engine holds which: a claim is one channel's hold on one engine,
pending until its session plays, released exactly once.

The book keeps the claims by engine and, for each content, the engines that hold one of it (an
engine never holds two claims of one content: the engine lets one session of a content live).
It is the pool's (:mod:`.pool`), which chooses engines under its lock and is told of every
activation and release to wake the fleet and serve waiting claims.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Callable

from .model import Engine


class ClaimState(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    RELEASED = "released"


class Claim:
    """One channel's hold on one engine: pending until its session plays, released exactly once.

    ``lost`` is set when the engine turns unhealthy or disappears: the holder should fail over.
    """

    __slots__ = ("_book", "content_key", "engine", "id", "lost", "state")

    def __init__(self, book: ClaimBook, claim_id: int, engine: Engine, content_key: str) -> None:
        self._book = book
        self.id = claim_id
        self.engine = engine
        self.content_key = content_key
        self.state = ClaimState.PENDING
        self.lost = asyncio.Event()

    def activate(self) -> None:
        """The engine session plays: the claim becomes an active stream."""
        if self.state is ClaimState.PENDING:
            self.state = ClaimState.ACTIVE
            self._book.activated(self)

    def release(self) -> None:
        """Give the engine's slot back; idempotent, synchronous so it is safe in ``finally``."""
        if self.state is not ClaimState.RELEASED:
            self.state = ClaimState.RELEASED
            self._book.release(self)


class ClaimBook:
    """The claims each engine holds; ``on_activate`` and ``on_release`` are told of each (the
    latter with whether the engine was left without any)."""

    def __init__(
        self,
        on_activate: Callable[[], None],
        on_release: Callable[[Claim, bool], None],
    ) -> None:
        self._on_activate = on_activate
        self._on_release = on_release
        self._claims: dict[str, dict[int, Claim]] = {}
        self._holders: dict[str, set[str]] = {}  # content key -> engines holding a claim of it
        self._ids = itertools.count(1)

    def register(self, engine: Engine, content_key: str) -> Claim:
        """A new pending claim of ``content_key`` on ``engine`` (chosen by the caller)."""
        claim = Claim(self, next(self._ids), engine, content_key)
        self._claims.setdefault(engine.id, {})[claim.id] = claim
        self._holders.setdefault(content_key, set()).add(engine.id)
        return claim

    def activated(self, claim: Claim) -> None:
        """``claim`` turned active (called by the claim itself)."""
        self._on_activate()

    def release(self, claim: Claim) -> None:
        """Forget ``claim`` (called by the claim itself, once)."""
        held = self._claims.get(claim.engine.id, {})
        if held.pop(claim.id, None) is not None:
            # One claim of a content per engine: this was the engine's only one of it.
            holders = self._holders.get(claim.content_key, set())
            holders.discard(claim.engine.id)
            if not holders:
                self._holders.pop(claim.content_key, None)
        if not held:
            self._claims.pop(claim.engine.id, None)
        self._on_release(claim, not held)

    def holding(self, content_key: str) -> set[str]:
        """Engines that already hold a claim of this content."""
        return self._holders.get(content_key, set())

    def on(self, engine_id: str) -> list[Claim]:
        return list(self._claims.get(engine_id, {}).values())

    def lose(self, engine_id: str) -> None:
        """Tell the claims on ``engine_id`` that their engine is lost: they must move."""
        for claim in self._claims.get(engine_id, {}).values():
            claim.lost.set()

    def loads(self) -> dict[str, int]:
        """Claims per engine, for engines that hold any."""
        return {engine_id: len(claims) for engine_id, claims in self._claims.items()}

    def counts(self, engine_id: str) -> tuple[int, int, int]:
        """``engine_id``'s claims: all of them, the active ones, and those told to move."""
        claims = self._claims.get(engine_id, {}).values()
        active = sum(1 for c in claims if c.state is ClaimState.ACTIVE)
        moving = sum(1 for c in claims if c.lost.is_set())
        return len(claims), active, moving
