"""The stream registry: one channel per content, shared by all its players, owned here.

Looking a channel up and creating it happen with no ``await`` in between, so two first players of
one channel can never open two engine sessions. The registry owns every channel's task and every
linger timer (:mod:`.linger`; one supervisor names and guards them) and the retirer that stops
old sessions; a channel is ended by asking it to stop, and the registry waits for that when it
closes.

A player that goes away while its channel starts gives its place back at once; a channel all of
whose players left before its start completed is stopped at once (its claim wait is abandoned, a
session being made is stopped once it exists), with no linger: lingering is for zapping between
channels that play. At most ``max_waiting`` channels wait for their start at once.

A channel that ended leaves nothing behind here, and the memory its bytes went through is handed
back to the system (:mod:`.heap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ..engines.client import EngineClient
from ..engines.model import ContentRef
from ..engines.pool import EnginePool
from ..logs import get_logger
from ..metrics import Metrics
from ..tasks import Supervisor
from .broadcast import Subscriber
from .channel import Channel, FailoverPolicy
from .errors import ChannelClosed, PlayerLeft, TooManyStarting
from .heap import HeapTrimmer
from .hls.feed import HlsFeed, HlsPolicy
from .linger import Lingers
from .retire import Retirer
from .upstream import Timeouts

log = get_logger(__name__)

_RETRY_WHEN_BUSY_S = 5.0  # about how long a start takes when an engine has room


@dataclass(slots=True)
class Tally:
    """Bytes moved over the registry's life, for the metrics: counted as they move for players,
    folded in from each channel's meter when it ends for engines."""

    bytes_out: int = 0
    bytes_in_ended: int = 0  # of channels that ended; live ones are in their meters


class Player:
    """One player's view of a channel: its cursor into the channel's broadcast (keep-alive
    packets are in the channel's data itself), and the tally what it is sent counts in."""

    def __init__(
        self, channel: Channel, subscriber: Subscriber, tally: Tally, joined_at: float
    ) -> None:
        self.channel = channel
        self.subscriber = subscriber
        self.tally = tally
        self.joined_at = joined_at


class StreamRegistry:
    """Channels by content key, with their tasks, linger timers and session retirements."""

    def __init__(
        self,
        *,
        pool: EnginePool,
        client: EngineClient,
        timeouts: Timeouts,
        window_bytes: int,
        linger_s: float,
        failover: FailoverPolicy | None = None,
        close_timeout_s: float = 10.0,
        metrics: Metrics | None = None,
        hls: HlsPolicy | None = None,
        max_waiting: int = 32,
    ) -> None:
        self._close_timeout_s = close_timeout_s
        self._max_waiting = max_waiting
        self._tasks = Supervisor("stream registry")
        self.retirer = Retirer(pool=pool, client=client, abandon_s=timeouts.abandon_s)
        self.metrics = metrics or Metrics()
        self._new_channel = functools.partial(
            Channel,
            pool=pool,
            client=client,
            retirer=self.retirer,
            timeouts=timeouts,
            window_bytes=window_bytes,
            failover=failover or FailoverPolicy(),
            metrics=self.metrics,
        )
        self._channels: dict[str, Channel] = {}
        self._upstreams: dict[Channel, asyncio.Task[None]] = {}
        self._lingers = Lingers(self._tasks, linger_s, self._stop)
        self._closing = False
        self.heap = HeapTrimmer()
        self.tally = Tally()
        self.hls_policy = hls or HlsPolicy()

    def channels(self) -> list[Channel]:
        """The channels players are sent to, one per content."""
        return list(self._channels.values())

    def is_playing(self, content: ContentRef) -> bool:
        """Whether a player of ``content`` would join a channel that plays (not start one)."""
        return self._joinable(content) is not None

    def running(self) -> list[Channel]:
        """Every channel whose task still runs, those already asked to stop included (their
        bytes still count until they end)."""
        return list(self._upstreams)

    def stop(self, content_key: str) -> Channel | None:
        """End a channel now, for an operator: its players' streams end, its session is stopped.
        None when no channel plays that content."""
        channel = self._channels.get(content_key)
        if channel is None:
            return None
        channel.end_cause = "stopped"
        self._lingers.cancel(channel)
        self._stop(channel)
        channel.broadcast.close("the stream was stopped by an operator")
        log.info("channel_stopped_by_operator", content=content_key, players=channel.players)
        return channel

    def waiting(self) -> int:
        """Channels whose first start is still to come (those asked to stop included: their
        start may still be under way)."""
        return sum(1 for channel in self._upstreams if channel.starting)

    @contextlib.asynccontextmanager
    async def play(
        self,
        content: ContentRef,
        gone: Callable[[], Awaitable[None]] | None = None,
        *,
        clean_start: bool = False,
    ) -> AsyncIterator[Player]:
        """Join (or start) ``content``'s channel for one player, for as long as the block runs.

        ``gone()`` ends when the player goes away; while the channel starts that gives the
        player's place back at once (raising :class:`~.errors.PlayerLeft`). Raises
        :class:`~.errors.ChannelError` before yielding when the channel cannot start.
        ``clean_start``: the player comes from another stream on the same connection, so it
        starts at a join point even when the channel holds none yet (keep-alive until then).
        """
        if self._closing:
            raise ChannelClosed("the gateway is shutting down")
        joined_at = time.monotonic()
        channel = self._channel_for(content)
        channel.players += 1
        self._lingers.cancel(channel)
        subscriber = channel.broadcast.subscribe(clean=clean_start)
        try:
            await _started_unless_gone(channel, gone)
            yield Player(channel, subscriber, self.tally, joined_at)
        finally:
            subscriber.close()
            channel.players -= 1
            if channel.players == 0:
                self._last_player_left(channel)

    def watch_hls(self, content: ContentRef, client: str, *, start: bool) -> Channel | None:
        """Count an HLS fetch of ``content`` by ``client``: the channel is held open for the
        idle window from now, and its segments are cut from now on. ``start``: open the channel
        when it does not play (a playlist request); else None (a segment of no channel)."""
        if start and self._closing:
            raise ChannelClosed("the gateway is shutting down")
        channel = self._channel_for(content) if start else self._joinable(content)
        if channel is None:
            return None
        if channel.hls is None or channel.hls.dormant:
            if channel.hls is not None:
                channel.hls.close()  # nobody fetched for a while: its segments are gone
            channel.hls = HlsFeed(channel.broadcast, self.hls_policy)
            log.info("hls_cutting_started", content=content.key, ready=channel.hls.ready)
        channel.hls.viewers.touch(client)
        if channel.players == 0:
            self._start_linger(channel)  # it waits out the HLS hold first
        return channel

    def end_players(self, reason: str) -> None:
        """End every player's stream now (shutdown); engine sessions stop in :meth:`close`."""
        self._closing = True
        for channel in self._channels.values():
            channel.end_cause = "shutdown"
            channel.broadcast.close(reason)

    async def close(self) -> None:
        """End every channel and wait (bounded) for their engine sessions to be stopped."""
        self._closing = True
        self._lingers.cancel_all()
        for channel in list(self._upstreams):
            channel.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*self._upstreams.values(), return_exceptions=True)
        await self._tasks.close()  # whatever did not end in time
        self.heap.close()
        await self.retirer.close(max(0.0, deadline - loop.time()))

    def _joinable(self, content: ContentRef) -> Channel | None:
        """The channel of ``content`` a new player joins, if one plays and is not ending."""
        channel = self._channels.get(content.key)
        if channel is None or channel.broadcast.closed or channel.stopping:
            return None
        return channel

    def _channel_for(self, content: ContentRef) -> Channel:
        joinable = self._joinable(content)
        if joinable is not None:
            return joinable
        if self.waiting() >= self._max_waiting:
            log.warning("channel_refused_too_many_starting", waiting=self._max_waiting)
            raise TooManyStarting(
                f"{self._max_waiting} channels are starting already; try again shortly",
                _RETRY_WHEN_BUSY_S,
            )
        channel = self._new_channel(content)
        self._channels[content.key] = channel
        task = self._tasks.spawn(channel.run(), name=f"channel {content.key}")
        self._upstreams[channel] = task
        task.add_done_callback(lambda t: self._forget(channel), context=contextvars.Context())
        log.info("channel_opened", content=content.key)
        return channel

    def _forget(self, channel: Channel) -> None:
        if self._upstreams.pop(channel, None) is not None:
            self.tally.bytes_in_ended += channel.meter.bytes_in
        if self._channels.get(channel.content.key) is channel:
            del self._channels[channel.content.key]
        log.info("channel_closed", content=channel.content.key, failovers=channel.failovers)
        if not self._closing:
            self.heap.request()

    def _last_player_left(self, channel: Channel) -> None:
        if not channel.starting or channel.watched:
            # A channel that plays lingers; so does one an HLS player still holds (its playlist
            # request waits for the same start): the linger waits out the hold first.
            self._start_linger(channel)
            return
        # Nobody waits for it: no start for nobody. Stopping abandons a claim wait and never
        # cancels a session start in flight (the session is stopped once it exists).
        if not channel.stopping and not self._closing:
            log.info("channel_abandoned", content=channel.content.key)
        self._stop(channel)

    def _start_linger(self, channel: Channel) -> None:
        # A channel whose upstream already ended finishes its own clean-up: never cut it short.
        if not channel.broadcast.closed and not self._closing and channel in self._upstreams:
            self._lingers.start(channel)

    def _stop(self, channel: Channel) -> None:
        # Unlist it first, so a player arriving while it shuts down opens a fresh channel.
        if self._channels.get(channel.content.key) is channel:
            del self._channels[channel.content.key]
        channel.stop()


async def _started_unless_gone(
    channel: Channel, gone: Callable[[], Awaitable[None]] | None
) -> None:
    """Wait for ``channel``'s start; raise :class:`PlayerLeft` if ``gone()`` ends first."""
    if gone is None:
        await channel.wait_started()
        return
    started = asyncio.ensure_future(channel.wait_started())
    left = asyncio.ensure_future(gone())
    try:
        await asyncio.wait((started, left), return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
        left.cancel()
        await asyncio.gather(started, left, return_exceptions=True)
    if started.done() and not started.cancelled():
        started.result()  # raises why the channel could not start
        return
    if left.done() and not left.cancelled():
        raise PlayerLeft
    raise asyncio.CancelledError
