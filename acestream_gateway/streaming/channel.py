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
from typing import TypeVar

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
    """What one session start gave: a session, or a pid to find again, and an error that ends
    the channel (first start only)."""

    session: EngineSession | None = None
    find_pid: str | None = None
    error: ChannelError | None = None


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
            claim = await self._until_stopped(self._claim(()))
        except _Stopped:
            return
        session: EngineSession | None = None
        find_pid: str | None = None  # a start that timed out may have made a session
        attempt, moved_at_once = 0, False
        try:
            while True:
                started = await self._start(claim, first=not self._started.done())
                session, find_pid = started.session, started.find_pid
                if started.error is not None:
                    raise started.error
                if session is not None:
                    end = await self._read(claim, session)
                    if end is None:
                        return
                    if end.kind is EndKind.NO_DATA and not self.meter.bytes_in:
                        # A channel that never sent a byte is dead, not failing: do not make its
                        # players wait for it again on engine after engine.
                        raise EngineFailed(end.reason)
                    if end.streamed_s >= self._failover.healthy_run_s:
                        attempt, moved_at_once = 0, False
                    if self.players == 0:
                        log.info("channel_ended_without_players", reason=end.reason)
                        return
                else:
                    end = SessionEnd(EndKind.OPEN_FAILED, "the engine could not start it")
                while True:
                    attempt += 1
                    if attempt > self._failover.attempts:
                        raise EngineFailed(f"the channel failed {attempt} times: {end.reason}")
                    self._log_failover(claim, end, attempt)
                    if end.engine_fault and not moved_at_once:
                        # The first move off an engine that failed is not hammering anything:
                        # go at once. Failures after it back off, so a fleet that is recovering
                        # (a VPN reconnecting) gets time.
                        moved_at_once = True
                    else:
                        await self._until_stopped(self._pause(self._failover.delay_s(attempt)))
                    same = not end.engine_fault and self._usable(claim)
                    if same and attempt == 1 and session is not None:
                        # The engine is healthy: try it again first, ending the old session
                        # first (a new pid would supersede it anyway).
                        await self._stop_quietly(session)
                        session = None
                        break
                    try:
                        new = await self._until_stopped(self._claim({claim.engine.id}))
                    except NoEngine as exc:
                        if same:  # no other engine now: the same one is better than none
                            if session is not None:
                                await self._stop_quietly(session)
                            session = None
                            break
                        end = SessionEnd(EndKind.OPEN_FAILED, exc.reason)
                        continue
                    # The new slot is held: now the old one may go (stopped, then released).
                    self._retirer.retire(claim, self.content, session, find_pid)
                    claim, session, find_pid = new, None, None
                    break
        except _Stopped:
            return
        finally:
            # The last claim and session go to the retirer, which stops the session (or finds a
            # timed-out start by its pid) and only then releases the claim.
            self.session = None
            self.claim = None
            self._retirer.retire(claim, self.content, session, find_pid)

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

    async def _claim(self, exclude: set[str] | tuple[()]) -> Claim:
        # A failover (players are attached) waits out a provisioning block, such as a VPN that
        # is reconnecting, for up to PROVISION_WAIT_S; a first start is refused at once.
        patient = bool(exclude)
        try:
            claim = await self._pool.claim(
                self.content.key, exclude=exclude, wait_for_provisioning=patient
            )
        except NoCapacity as exc:
            code = exc.code.value if exc.code else None
            raise NoEngine(exc.reason, exc.retry_after_s, code) from None
        self.claim = claim
        structlog.contextvars.bind_contextvars(engine=claim.engine.name)
        return claim

    async def _start(self, claim: Claim, *, first: bool) -> _Started:
        """Start a session on the claimed engine (never raises: the caller decides).

        The first start of a channel has players waiting for an answer: a failure then carries
        the error that ends the channel at once, rather than keeping them waiting.
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
            failure = EngineFailed(exc.reason) if first else None
            if failure is not None:
                self._end(failure)  # players hear it now, before any clean-up
            return _Started(find_pid=pid if isinstance(exc, EngineTimeout) else None, error=failure)
        self._pool.note_success(claim.engine.id)
        self.metrics.session_starts.inc()
        self.session = session
        log.info("engine_session_started", infohash=session.infohash, pid=session.pid)
        if not self._started.done():
            self._started.set_result(None)
        return _Started(session=session)

    async def _read(self, claim: Claim, session: EngineSession) -> SessionEnd | None:
        """Read the session until it ends or its engine is lost; None when asked to stop."""
        reading = read_session(
            self._client,
            session,
            self.broadcast,
            self._timeouts,
            splice=self.broadcast.bytes_published > 0,
            on_open=claim.activate,
            meter=self.meter,
        )
        winner, end = await self._first(reading, self._stop, claim.lost)
        if winner == 1:
            return None
        if winner == 2:
            log.warning("engine_lost", engine=claim.engine.name)
            return SessionEnd(EndKind.ENGINE_LOST, "the engine failed")
        assert end is not None
        return end

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


def _let_cancellation_go(task: asyncio.Future[object]) -> None:
    """Take a cancelled task's error from it. The error's traceback holds the task's frames, and
    a timeout scope in them holds the task again: a cycle that only a full garbage collection
    frees, which may come minutes later, and with it everything the frames hold (a session's
    reader, the channel's broadcast window, its players' sockets)."""
    if task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            task.exception()
