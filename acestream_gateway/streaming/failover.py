"""Where a playing channel goes on after its engine session ended: the same engine, a new home
claimed while the old session still played, or another engine — the new slot always claimed
before the old one is let go (handed to the :class:`~.retire.Retirer`), so
``MAX_STREAMS_PER_ENGINE`` holds throughout. Attempts in a row are bounded by the
:class:`FailoverPolicy`, with backoff; the first move off an engine that failed goes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ..engines.client import EngineSession
from ..engines.model import ContentRef
from ..engines.pool import Claim
from ..logs import get_logger
from ..metrics import Metrics
from .engine_link import EngineLink
from .errors import EngineFailed, NoEngine
from .race import Stopped, pause, until_stopped
from .retire import Retirer
from .upstream import EndKind, SessionEnd

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """How hard a playing channel tries to stay up."""

    attempts: int = 3
    backoff_s: float = 0.5  # before the second attempt in a row; doubles after
    healthy_run_s: float = 10.0  # a session that streamed this long starts the count over

    def delay_s(self, attempt: int) -> float:
        """The pause before attempt ``attempt`` (1-based): none before the first."""
        return 0.0 if attempt <= 1 else self.backoff_s * 2.0 ** (attempt - 2)


@dataclass(slots=True)
class Tries:
    """Failover attempts in a row, and whether the one immediate move off a failed engine was
    made."""

    count: int = 0
    moved_at_once: bool = False


class Failover:
    """One channel's failovers: the decision where to go on, and their count and log lines."""

    def __init__(
        self,
        content: ContentRef,
        *,
        link: EngineLink,
        retirer: Retirer,
        policy: FailoverPolicy,
        stop: asyncio.Event,
        metrics: Metrics,
    ) -> None:
        self.policy = policy
        self.count = 0  # failovers over the channel's life
        self._content = content
        self._link = link
        self._retirer = retirer
        self._stop = stop
        self._metrics = metrics

    def note(self, claim: Claim, end: SessionEnd, attempt: int, players: int) -> None:
        """Count and log one failover attempt off ``claim``'s engine after ``end``."""
        self.count += 1
        self._metrics.failovers.labels(reason=end.kind.value).inc()
        log.warning(
            "channel_failover",
            engine=claim.engine.name,
            reason=end.reason,
            detail=end.detail,
            attempt=attempt,
            of=self.policy.attempts,
            players=players,
        )

    def after_read(
        self,
        claim: Claim,
        end: SessionEnd,
        move: Claim | NoEngine | None,
        tries: Tries,
        players: int,
    ) -> tuple[Tries, Claim | None]:
        """Fold the end of a session that played into the attempts in a row; the new home
        claimed while it played, if one was. A session that played a good while starts the
        count over; a wait for a new home that found none was this failure's first attempt."""
        if end.streamed_s >= self.policy.healthy_run_s:
            tries = Tries()
        if isinstance(move, NoEngine):
            tries.count += 1
            self.note(claim, end, tries.count, players)
            tries.moved_at_once = True
            return tries, None
        return tries, move

    async def new_home(self, claim: Claim) -> tuple[SessionEnd | None, Claim | NoEngine | None]:
        """``claim``'s engine was lost while its session played: the end to go on from, with a
        new home claimed meanwhile (the old session plays on, if it can, while it is made) or
        why none could be had; ``(None, None)`` when the channel is asked to stop meanwhile."""
        lost = SessionEnd(EndKind.ENGINE_LOST, "the engine failed")
        if self.policy.attempts < 1:
            return lost, None
        try:
            moved = await until_stopped(self._link.claim({claim.engine.id}), self._stop)
        except NoEngine as exc:
            return SessionEnd(EndKind.ENGINE_LOST, exc.reason), exc
        except Stopped:
            return None, None
        return lost, moved

    async def move(
        self,
        claim: Claim,
        session: EngineSession | None,
        find_pid: str | None,
        end: SessionEnd,
        moved: Claim | None,
        first_failure: EngineFailed | None,
        tries: Tries,
        players: Callable[[], int],
    ) -> tuple[Claim, EngineSession | None, str | None]:
        """Where the channel goes on after ``end``: the same engine (its old session stopped)
        or ``moved``, else a new claim (the old claim and session handed to the retirer); the
        claim, session and pid to go on with. Raises the channel's end when the attempts are
        used up, or when a first start (``first_failure``) has nowhere else to go; the claim
        and session passed in are the caller's to retire then. Raises
        :class:`~.race.Stopped` when the channel is asked to stop while it waits. ``players``
        counts the channel's players, for the log (a callable, not kept: the channel's own
        objects must not hold the channel, or it would outlive its end until a full garbage
        collection)."""
        while True:
            tries.count += 1
            if tries.count > self.policy.attempts:
                if moved is not None:
                    moved.release()
                raise first_failure or EngineFailed(
                    f"the channel failed {tries.count} times: {end.reason}"
                )
            self.note(claim, end, tries.count, players())
            if moved is None:
                if end.engine_fault and not tries.moved_at_once:
                    # The first move off an engine that failed is not hammering anything: go at
                    # once. Failures after it back off, so a fleet that is recovering (a VPN
                    # reconnecting) gets time.
                    tries.moved_at_once = True
                else:
                    await until_stopped(pause(self.policy.delay_s(tries.count)), self._stop)
                same = not end.engine_fault and self._link.usable(claim)
                if same and tries.count == 1 and session is not None:
                    # The engine is healthy: try it again first, ending the old session first
                    # (a new pid would supersede it anyway).
                    await self._link.stop_quietly(session)
                    return claim, None, find_pid
                try:
                    moved = await until_stopped(
                        self._link.claim({claim.engine.id}, patient=first_failure is None),
                        self._stop,
                    )
                except NoEngine as exc:
                    if first_failure is not None:
                        raise first_failure from None  # no other engine for a first start
                    if same:  # no other engine now: the same one is better than none
                        if session is not None:
                            await self._link.stop_quietly(session)
                        return claim, None, find_pid
                    end = SessionEnd(EndKind.OPEN_FAILED, exc.reason)
                    continue
            # The new slot is held: now the old one may go (stopped, then released).
            self._retirer.retire(claim, self._content, session, find_pid)
            return moved, None, None
