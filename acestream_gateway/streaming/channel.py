"""One channel: a claim on an engine, one engine session at a time, and the broadcast its players
read — kept playing through engine failures.

The channel's life ends in one place, :meth:`Channel.run`. Within it a session is started and read
until it ends; when it ends while players are attached (EOF, a broken connection, a stall, an
engine that turned unhealthy or disappeared) the channel fails over: it opens the content again,
on the same engine when that engine is still healthy, else on another one — claiming the new slot
before the old one is let go, so ``MAX_STREAMS_PER_ENGINE`` holds throughout — and keeps writing
to the same broadcast, so players keep their connections. Keep-alive packets cover the gap and the
new data starts at a splice point. Attempts in a row are bounded (``FAILOVER_ATTEMPTS``, with
backoff); a session that played a good while starts the count over.

An engine that is told to let its channels go (it turned unhealthy, or is retired) may still be
streaming fine: the channel keeps reading it while it claims a new home, waiting for one as long
as the fleet may take to make it (``PROVISION_WAIT_S``; at ``MAX_ACTIVE_REPLICAS`` the fleet first
removes the leaving engine to free its place), and switches once the new slot is held. That wait
is one attempt. A first start that fails because of its engine (it died, is gone, does not answer)
moves to another engine the same way, its players still waiting for their headers; when no other
engine can take the channel, or the engine refuses the content itself, the channel ends.

Old sessions are handed to the :class:`~.retire.Retirer`, which stops them and only then releases
their claims. The registry asks a channel to end with :meth:`stop` (never by cancelling a start
in flight, which would orphan the session the engine is making).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from ..engines.client import (
    EngineClient,
    EngineError,
    EngineRefused,
    EngineSession,
    EngineTimeout,
    new_pid,
)
from ..engines.model import ContentRef, EngineState
from ..engines.pool import Claim, EnginePool, NoCapacity
from ..logs import get_logger
from ..metrics import Metrics
from .broadcast import Broadcast
from .errors import ChannelClosed, ChannelError, EngineFailed, EngineRefusedChannel, NoEngine
from .hls.feed import HlsFeed
from .mpegts import NULL_PACKET
from .retire import Retirer
from .upstream import EndKind, Meter, SessionEnd, Timeouts, read_session

log = get_logger(__name__)

T = TypeVar("T")

__all__ = ["Channel", "FailoverPolicy", "Timeouts"]


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """How hard a playing channel tries to stay up."""

    attempts: int = 3
    backoff_s: float = 0.5  # before the second attempt in a row; doubles after
    healthy_run_s: float = 10.0  # a session that streamed this long starts the count over

    def delay_s(self, attempt: int) -> float:
        """The pause before attempt ``attempt`` (1-based): none before the first."""
        return 0.0 if attempt <= 1 else self.backoff_s * 2.0 ** (attempt - 2)


@dataclass(frozen=True, slots=True)
class _Started:
    """What one session start gave: a session, or a pid to find again, and on a first start the
    error that ends the channel: at once (``error``, the content was refused) or when no other
    engine can take it (``failure``, the engine failed)."""

    session: EngineSession | None = None
    find_pid: str | None = None
    error: ChannelError | None = None
    failure: EngineFailed | None = None
    reason: str = "the engine could not start it"


@dataclass(slots=True)
class _Tries:
    """Failover attempts in a row, and whether the one immediate move off a failed engine was
    made."""

    count: int = 0
    moved_at_once: bool = False


class _Stopped(Exception):
    """The channel was asked to stop while it waited."""


class Channel:
    """A content's shared upstream; created and owned by the registry."""

    def __init__(
        self,
        content: ContentRef,
        *,
        pool: EnginePool,
        client: EngineClient,
        retirer: Retirer,
        timeouts: Timeouts,
        window_bytes: int,
        failover: FailoverPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.content = content
        self.broadcast = Broadcast(window_bytes)
        self.started_at = time.time()
        self.session: EngineSession | None = None
        self.claim: Claim | None = None
        self.players = 0
        self.hls: HlsFeed | None = None  # made by the registry on the first HLS request
        self.failovers = 0
        self.meter = Meter()
        self.bytes_out = 0  # handed to this channel's players, over all of them
        self.end_cause = "channel_failed"  # why its players' streams end, for the metrics
        self.metrics = metrics or Metrics()
        self._pool = pool
        self._client = client
        self._retirer = retirer
        self._timeouts = timeouts
        self._failover = failover or FailoverPolicy()
        self._stop = asyncio.Event()
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def hls_held_until(self) -> float:
        """Until when (monotonic seconds) HLS players hold the channel open."""
        return self.hls.viewers.until if self.hls is not None else -float("inf")

    @property
    def watched(self) -> bool:
        """Whether a TS player is attached or an HLS player fetched within its idle window."""
        return self.players > 0 or self.hls_held_until > time.monotonic()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def starting(self) -> bool:
        """Whether its first session is still to come (its players wait for the start)."""
        return not self._started.done()

    def stop(self) -> None:
        """Ask the channel to end (its last player left, or the gateway closes)."""
        self._stop.set()

    async def wait_started(self) -> None:
        """Return once the engine session exists; raise :class:`ChannelError` if it never will."""
        await asyncio.shield(self._started)

    async def run(self) -> None:
        """The channel's task: its whole life, and the one place it ends."""
        structlog.contextvars.bind_contextvars(content=self.content.key)
        keepalive = asyncio.create_task(self._keepalive(), name=f"keepalive {self.content.key}")
        try:
            await self._life()
        except ChannelError as exc:
            log.warning("channel_failed", reason=exc.reason)
            self._end(exc)
        except asyncio.CancelledError:
            self._end(ChannelClosed("the channel was closed"))
            raise
        except Exception:
            log.exception("channel_crashed")
            self._end(EngineFailed("the gateway failed to play the channel"))
        finally:
            self._end(None)
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)

    # --- the life of the channel -----------------------------------------------------------------

    async def _life(self) -> None:
        try:
            claim = await self._until_stopped(self._claim((), patient=False))
        except _Stopped:
            return
        self._bind(claim)
        session: EngineSession | None = None
        find_pid: str | None = None  # a start that timed out may have made a session
        tries = _Tries()
        try:
            while True:
                started = await self._start(claim, first=not self._started.done())
                session, find_pid = started.session, started.find_pid
                if started.error is not None:
                    raise started.error
                moved: Claim | None = None  # a new home claimed while the old session played
                if session is not None:
                    end, move = await self._read(claim, session)
                    if end is None:
                        return
                    if end.kind is EndKind.NO_DATA and not self.meter.bytes_in:
                        # A channel that never sent a byte is dead, not failing: do not make its
                        # players wait for it again on engine after engine.
                        raise EngineFailed(end.reason)
                    if end.streamed_s >= self._failover.healthy_run_s:
                        tries = _Tries()
                    if isinstance(move, NoEngine):
                        # The wait for a new home was this failure's first attempt; it is over.
                        tries.count += 1
                        self._log_failover(claim, end, tries.count)
                        tries.moved_at_once = True
                    else:
                        moved = move
                    if not self.watched:
                        log.info("channel_ended_without_players", reason=end.reason)
                        if moved is not None:
                            moved.release()
                        return
                else:
                    end = SessionEnd(EndKind.OPEN_FAILED, started.reason)
                claim, session, find_pid = await self._fail_over(
                    claim, session, find_pid, end, moved, started.failure, tries
                )
        except _Stopped:
            return
        finally:
            # The last claim and session go to the retirer, which stops the session (or finds a
            # timed-out start by its pid) and only then releases the claim.
            self.session = None
            self.claim = None
            self._retirer.retire(claim, self.content, session, find_pid)

    async def _fail_over(
        self,
        claim: Claim,
        session: EngineSession | None,
        find_pid: str | None,
        end: SessionEnd,
        moved: Claim | None,
        first_failure: EngineFailed | None,
        tries: _Tries,
    ) -> tuple[Claim, EngineSession | None, str | None]:
        """Where the channel goes on after ``end``: the same engine (its old session stopped)
        or ``moved``, else a new claim (the old claim and session handed to the retirer); the
        claim, session and pid to go on with. Raises the channel's end when the attempts are
        used up, or when a first start (``first_failure``) has nowhere else to go; the claim
        and session passed in are the caller's to retire then."""
        while True:
            tries.count += 1
            if tries.count > self._failover.attempts:
                if moved is not None:
                    moved.release()
                raise first_failure or EngineFailed(
                    f"the channel failed {tries.count} times: {end.reason}"
                )
            self._log_failover(claim, end, tries.count)
            if moved is None:
                if end.engine_fault and not tries.moved_at_once:
                    # The first move off an engine that failed is not hammering anything: go at
                    # once. Failures after it back off, so a fleet that is recovering (a VPN
                    # reconnecting) gets time.
                    tries.moved_at_once = True
                else:
                    await self._until_stopped(self._pause(self._failover.delay_s(tries.count)))
                same = not end.engine_fault and self._usable(claim)
                if same and tries.count == 1 and session is not None:
                    # The engine is healthy: try it again first, ending the old session first
                    # (a new pid would supersede it anyway).
                    await self._stop_quietly(session)
                    return claim, None, find_pid
                try:
                    moved = await self._until_stopped(
                        self._claim({claim.engine.id}, patient=first_failure is None)
                    )
                except NoEngine as exc:
                    if first_failure is not None:
                        raise first_failure from None  # no other engine for a first start
                    if same:  # no other engine now: the same one is better than none
                        if session is not None:
                            await self._stop_quietly(session)
                        return claim, None, find_pid
                    end = SessionEnd(EndKind.OPEN_FAILED, exc.reason)
                    continue
            # The new slot is held: now the old one may go (stopped, then released).
            self._retirer.retire(claim, self.content, session, find_pid)
            self._bind(moved)
            return moved, None, None

    def _bind(self, claim: Claim) -> None:
        """Name the channel's engine in its logs (bound in the channel's own task: a claim is
        made in a child task, whose context ends with it)."""
        self.claim = claim
        structlog.contextvars.bind_contextvars(engine=claim.engine.name)

    def _log_failover(self, claim: Claim, end: SessionEnd, attempt: int) -> None:
        self.failovers += 1
        self.metrics.failovers.labels(reason=end.kind.value).inc()
        log.warning(
            "channel_failover",
            engine=claim.engine.name,
            reason=end.reason,
            detail=end.detail,
            attempt=attempt,
            of=self._failover.attempts,
            players=self.players,
        )

    def _usable(self, claim: Claim) -> bool:
        engine = self._pool.get(claim.engine.id)
        return engine is not None and engine.state is EngineState.READY and not claim.lost.is_set()

    # --- one session -----------------------------------------------------------------------------

    async def _claim(self, exclude: set[str] | tuple[()], *, patient: bool = True) -> Claim:
        # A failover (players are attached) waits out a provisioning block, such as a VPN that
        # is reconnecting, and a full fleet's making room, for up to PROVISION_WAIT_S; a first
        # start is refused at once, like a new channel.
        try:
            claim = await self._pool.claim(
                self.content.key, exclude=exclude, wait_for_provisioning=patient
            )
        except NoCapacity as exc:
            code = exc.code.value if exc.code else None
            raise NoEngine(exc.reason, exc.retry_after_s, code) from None
        return claim

    async def _start(self, claim: Claim, *, first: bool) -> _Started:
        """Start a session on the claimed engine (never raises: the caller decides).

        The first start of a channel has players waiting for an answer: a refusal of the content
        then carries the error that ends the channel at once, and a failure of the engine the
        one to end it with when no other engine can take the channel.
        """
        pid = new_pid()
        try:
            session = await self._client.start_session(claim.engine.address, self.content, pid)
        except EngineRefused as exc:
            log.warning("engine_session_refused", reason=exc.reason)
            self.metrics.session_failures.labels(reason="refused").inc()
            return _Started(error=EngineRefusedChannel(exc.reason) if first else None)
        except EngineError as exc:
            log.warning("engine_session_failed", reason=exc.reason, detail=exc.detail)
            self.metrics.session_failures.labels(reason="engine_error").inc()
            self._pool.note_failure(claim.engine.id, exc.reason)
            return _Started(
                find_pid=pid if isinstance(exc, EngineTimeout) else None,
                failure=EngineFailed(exc.reason) if first else None,
                reason=exc.reason,
            )
        self._pool.note_success(claim.engine.id)
        self.metrics.session_starts.inc()
        self.session = session
        log.info("engine_session_started", infohash=session.infohash, pid=session.pid)
        if not self._started.done():
            self._started.set_result(None)
        return _Started(session=session)

    async def _read(
        self, claim: Claim, session: EngineSession
    ) -> tuple[SessionEnd | None, Claim | NoEngine | None]:
        """Read the session until it ends, or until its engine is lost and a new home is held
        (then the new claim comes with the end, or why none could be had); the end is None when
        asked to stop."""
        reading = asyncio.ensure_future(
            read_session(
                self._client,
                session,
                self.broadcast,
                self._timeouts,
                splice=self.broadcast.bytes_published > 0,
                on_open=claim.activate,
                meter=self.meter,
            )
        )
        try:
            winner, end = await self._first(asyncio.shield(reading), self._stop, claim.lost)
            if winner == 1:
                return None, None
            if winner == 0:
                assert end is not None
                return end, None
            log.warning("engine_lost", engine=claim.engine.name)
            lost = SessionEnd(EndKind.ENGINE_LOST, "the engine failed")
            if self._failover.attempts < 1:
                return lost, None
            try:  # the old session plays on (if it can) while the new home is made
                moved = await self._until_stopped(self._claim({claim.engine.id}))
            except NoEngine as exc:
                return SessionEnd(EndKind.ENGINE_LOST, exc.reason), exc
            except _Stopped:
                return None, None
            return lost, moved
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            _let_cancellation_go(reading)

    async def _stop_quietly(self, session: EngineSession) -> None:
        try:
            await self._client.stop_session(session)
        except EngineError as exc:
            log.info("engine_session_stop_failed", reason=exc.reason, detail=exc.detail)

    # --- waiting, and ending ---------------------------------------------------------------------

    async def _until_stopped(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the channel is asked to stop first (then raise ``_Stopped``); a
        result that is ready together with the stop still wins (a claim just made must reach its
        owner, to be released)."""
        winner, result = await self._first(aw, self._stop)
        if winner == 0:
            return result  # type: ignore[return-value]
        raise _Stopped

    async def _first(self, aw: Awaitable[T], *events: asyncio.Event) -> tuple[int, T | None]:
        """Run ``aw`` until it ends or one of ``events`` is set: ``(0, result)`` or ``(i, None)``
        for the ``i``-th event (1-based). A result that is ready wins over an event."""
        main = asyncio.ensure_future(aw)
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait([main, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (main, *waiters):
                task.cancel()
            await asyncio.gather(main, *waiters, return_exceptions=True)
            for task in (main, *waiters):
                _let_cancellation_go(task)
        if main.done() and not main.cancelled():
            return 0, main.result()
        for index, waiter in enumerate(waiters, 1):
            if waiter.done() and not waiter.cancelled():
                return index, None
        raise asyncio.CancelledError

    @staticmethod
    async def _pause(delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def _keepalive(self) -> None:
        """A TS null packet for every player whenever the engine has been quiet for a while
        (prebuffering, a stall, a failover), so players with read timeouts keep waiting. One
        timer per channel, not per player."""
        interval = self._timeouts.keepalive_s
        while not self.broadcast.closed:
            await asyncio.sleep(interval)
            if self.broadcast.quiet_for() >= interval:
                self.broadcast.publish(NULL_PACKET)

    def _end(self, error: ChannelError | None) -> None:
        """Tell waiting players and readers the channel is over (idempotent)."""
        if not self._started.done():
            self._started.set_exception(error or ChannelClosed("the channel was closed"))
            self._started.exception()  # retrieved here: players may all have gone already
        self.broadcast.close(error.reason if error is not None else None)


def _let_cancellation_go(task: asyncio.Future[Any]) -> None:
    """Take a cancelled task's error from it. The error's traceback holds the task's frames, and
    a timeout scope in them holds the task again: a cycle that only a full garbage collection
    frees, which may come minutes later, and with it everything the frames hold (a session's
    reader, the channel's broadcast window, its players' sockets)."""
    if task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            task.exception()
