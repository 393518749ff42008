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

The channel runs its life here; its claims and session starts are :mod:`.engine_link`'s, the
choice where to go on after a session ended is :mod:`.failover`'s, and its waits that a stop cuts
short are :mod:`.race`'s.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from ..engines.client import EngineClient, EngineSession
from ..engines.model import ContentRef
from ..engines.pool import Claim, EnginePool
from ..logs import get_logger
from ..metrics import Metrics
from .broadcast import Broadcast
from .engine_link import EngineLink
from .errors import ChannelClosed, ChannelError, EngineFailed, NoEngine
from .failover import Failover, FailoverPolicy, Tries
from .hls.feed import HlsFeed
from .mpegts import NULL_PACKET
from .race import Stopped, first, let_cancellation_go, until_stopped
from .retire import Retirer
from .upstream import EndKind, Meter, SessionEnd, Timeouts, read_session

log = get_logger(__name__)

__all__ = ["Channel", "FailoverPolicy", "Timeouts"]


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
        self.meter = Meter()
        self.bytes_out = 0  # handed to this channel's players, over all of them
        self.end_cause = "channel_failed"  # why its players' streams end, for the metrics
        self.metrics = metrics or Metrics()
        self._client = client
        self._retirer = retirer
        self._timeouts = timeouts
        self._stop = asyncio.Event()
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._link = EngineLink(content, pool=pool, client=client, metrics=self.metrics)
        self._failover = Failover(
            content,
            link=self._link,
            retirer=retirer,
            policy=failover or FailoverPolicy(),
            stop=self._stop,
            metrics=self.metrics,
        )

    @property
    def failovers(self) -> int:
        """Failover attempts over the channel's life."""
        return self._failover.count

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
        keepalive = asyncio.create_task(
            _keepalive(self.broadcast, self._timeouts.keepalive_s),
            name=f"keepalive {self.content.key}",
        )
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
            claim = await until_stopped(self._link.claim((), patient=False), self._stop)
        except Stopped:
            return
        self._bind(claim)
        session: EngineSession | None = None
        find_pid: str | None = None  # a start that timed out may have made a session
        tries = Tries()
        try:
            while True:
                started = await self._link.start(claim, first=not self._started.done())
                session, find_pid = started.session, started.find_pid
                if started.error is not None:
                    raise started.error
                moved: Claim | None = None  # a new home claimed while the old session played
                if session is not None:
                    self._playing(session)
                    end, move = await self._read(claim, session)
                    if end is None:
                        return
                    if end.kind is EndKind.NO_DATA and not self.meter.bytes_in:
                        # A channel that never sent a byte is dead, not failing: do not make its
                        # players wait for it again on engine after engine.
                        raise EngineFailed(end.reason)
                    tries, moved = self._failover.after_read(claim, end, move, tries, self.players)
                    if not self.watched:
                        log.info("channel_ended_without_players", reason=end.reason)
                        if moved is not None:
                            moved.release()
                        return
                else:
                    end = SessionEnd(EndKind.OPEN_FAILED, started.reason)
                went_on = await self._failover.move(
                    claim,
                    session,
                    find_pid,
                    end,
                    moved,
                    started.failure,
                    tries,
                    lambda: self.players,
                )
                if went_on[0] is not claim:
                    self._bind(went_on[0])
                claim, session, find_pid = went_on
        except Stopped:
            return
        finally:
            # The last claim and session go to the retirer, which stops the session (or finds a
            # timed-out start by its pid) and only then releases the claim.
            self.session = None
            self.claim = None
            self._retirer.retire(claim, self.content, session, find_pid)

    def _playing(self, session: EngineSession) -> None:
        """A session started: it is the channel's, and its waiting players may have it."""
        self.session = session
        if not self._started.done():
            self._started.set_result(None)

    def _bind(self, claim: Claim) -> None:
        """Name the channel's engine in its logs (bound in the channel's own task: a claim is
        made in a child task, whose context ends with it)."""
        self.claim = claim
        structlog.contextvars.bind_contextvars(engine=claim.engine.name)

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
            winner, end = await first(asyncio.shield(reading), self._stop, claim.lost)
            if winner == 1:
                return None, None
            if winner == 0:
                assert end is not None
                return end, None
            log.warning("engine_lost", engine=claim.engine.name)
            return await self._failover.new_home(claim)
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            let_cancellation_go(reading)

    # --- ending -----------------------------------------------------

    def _end(self, error: ChannelError | None) -> None:
        """Tell waiting players and readers the channel is over (idempotent)."""
        if not self._started.done():
            self._started.set_exception(error or ChannelClosed("the channel was closed"))
            self._started.exception()  # retrieved here: players may all have gone already
        self.broadcast.close(error.reason if error is not None else None)


async def _keepalive(broadcast: Broadcast, interval_s: float) -> None:
    """A TS null packet for every player whenever the engine has been quiet for a while
    (prebuffering, a stall, a failover), so players with read timeouts keep waiting. One timer
    per channel, not per player."""
    while not broadcast.closed:
        await asyncio.sleep(interval_s)
        if broadcast.quiet_for() >= interval_s:
            broadcast.publish(NULL_PACKET)
