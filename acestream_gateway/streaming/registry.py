"""The stream registry: one channel per content, shared by all its players, owned here.

Looking a channel up and creating it happen with no ``await`` in between, so two first players of
one channel can never open two engine sessions. The registry owns every channel's upstream task
and every linger timer: it names them, and cancels and awaits them when channels close.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator

from ..engines.client import EngineClient
from ..engines.model import ContentRef
from ..engines.pool import EnginePool
from ..logs import get_logger
from .broadcast import Subscriber
from .channel import Channel, Timeouts

log = get_logger(__name__)


class Player:
    """One player's view of a channel (keep-alive packets are in the channel's data itself)."""

    def __init__(self, channel: Channel, subscriber: Subscriber) -> None:
        self.channel = channel
        self._subscriber = subscriber

    async def chunks(self) -> AsyncIterator[bytes]:
        """Stream data until the channel ends.

        Raises ``PlayerTooSlow`` or ``BroadcastEnded`` (see ``broadcast``).
        """
        while (data := await self._subscriber.read()) is not None:
            yield data


class StreamRegistry:
    """Channels by content key, with their upstream and linger tasks."""

    def __init__(
        self,
        *,
        pool: EnginePool,
        client: EngineClient,
        timeouts: Timeouts,
        window_bytes: int,
        linger_s: float,
    ) -> None:
        self._pool = pool
        self._client = client
        self._timeouts = timeouts
        self._window_bytes = window_bytes
        self._linger_s = linger_s
        self._channels: dict[str, Channel] = {}
        self._upstreams: dict[Channel, asyncio.Task[None]] = {}
        self._lingers: dict[Channel, asyncio.Task[None]] = {}
        self._closing = False

    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    @contextlib.asynccontextmanager
    async def play(self, content: ContentRef) -> AsyncIterator[Player]:
        """Join (or start) ``content``'s channel for one player, for as long as the block runs.

        Raises ``UpstreamFailed`` before yielding when the channel cannot start.
        """
        if self._closing:
            raise RuntimeError("the registry is shutting down")
        channel = self._channel_for(content)
        channel.players += 1
        self._cancel_linger(channel)
        subscriber = channel.broadcast.subscribe()
        try:
            await channel.wait_started()
            yield Player(channel, subscriber)
        finally:
            subscriber.close()
            channel.players -= 1
            if channel.players == 0:
                self._start_linger(channel)

    def end_players(self, reason: str) -> None:
        """End every player's stream now (shutdown); engine sessions stop in :meth:`close`."""
        self._closing = True
        for channel in self._channels.values():
            channel.broadcast.close(reason)

    async def close(self) -> None:
        """Stop every channel (their engine sessions are stopped) and every timer."""
        self._closing = True
        for task in self._lingers.values():
            task.cancel()
        await asyncio.gather(*self._lingers.values(), return_exceptions=True)
        await asyncio.gather(*(self._stop(c) for c in list(self._upstreams)))

    def _channel_for(self, content: ContentRef) -> Channel:
        channel = self._channels.get(content.key)
        if channel is not None and not channel.broadcast.closed:
            return channel
        channel = Channel(
            content,
            pool=self._pool,
            client=self._client,
            timeouts=self._timeouts,
            window_bytes=self._window_bytes,
        )
        self._channels[content.key] = channel
        # Channels outlive the request that opened them: their tasks log in a context of their own.
        task = asyncio.create_task(
            channel.run(), name=f"upstream {content.key}", context=contextvars.Context()
        )
        self._upstreams[channel] = task
        task.add_done_callback(lambda t: self._forget(channel, t), context=contextvars.Context())
        log.info("channel_opened", content=content.key)
        return channel

    def _forget(self, channel: Channel, task: asyncio.Task[None]) -> None:
        self._upstreams.pop(channel, None)
        if self._channels.get(channel.content.key) is channel:
            del self._channels[channel.content.key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("upstream_crashed", content=channel.content.key, exc_info=exc)
        log.info("channel_closed", content=channel.content.key)

    def _start_linger(self, channel: Channel) -> None:
        # A channel whose upstream already ended finishes its own clean-up: never cut it short.
        if channel.broadcast.closed or self._closing:
            return
        if channel in self._upstreams and channel not in self._lingers:
            task = asyncio.create_task(
                self._linger(channel),
                name=f"linger {channel.content.key}",
                context=contextvars.Context(),
            )
            self._lingers[channel] = task
            task.add_done_callback(lambda t: self._linger_done(channel, t))

    def _linger_done(self, channel: Channel, task: asyncio.Task[None]) -> None:
        # Only forget this timer: a cancelled one may finish after its successor started.
        if self._lingers.get(channel) is task:
            del self._lingers[channel]

    def _cancel_linger(self, channel: Channel) -> None:
        task = self._lingers.pop(channel, None)
        if task is not None:
            task.cancel()

    async def _linger(self, channel: Channel) -> None:
        await asyncio.sleep(self._linger_s)
        if channel.players == 0:
            log.info("channel_idle", content=channel.content.key, linger_s=self._linger_s)
            await self._stop(channel)

    async def _stop(self, channel: Channel) -> None:
        # Unlist it first, so a player arriving while it shuts down opens a fresh channel.
        if self._channels.get(channel.content.key) is channel:
            del self._channels[channel.content.key]
        task = self._upstreams.get(channel)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
