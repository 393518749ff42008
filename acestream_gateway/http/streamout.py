"""Writing one channel to one player's connection: the headers of a live TS stream, its body fed
from the channel's broadcast, and the end of the connection.

Both ways of playing use it: ``/ace/getstream`` (``players``) and the lineup's channels
(``stations``). The body ends when the connection closes, exactly like the engine's own stream
(no chunked framing), so a player's bytes are the channel's shared blocks as they are: a player
at the live edge is handed each block by the channel itself, straight to its socket, in one pass
over all such players (see ``streaming.broadcast``); only a player behind the live edge (joining,
or catching up after its socket filled) runs its own loop, with flow control and a deadline.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..logs import get_logger
from ..streaming.broadcast import BroadcastEnded, PlayerTooSlow, Subscriber
from ..streaming.mpegts import NULL_PACKET
from ..streaming.registry import Player

log = get_logger(__name__)

STREAM_HEADERS = {
    "Content-Type": "video/mp2t",
    "Cache-Control": "no-cache, no-store",
    "Accept-Ranges": "none",
}
"""The headers of a stream, and of the answer to a probe of one."""


class LiveResponse(web.StreamResponse):
    """A response whose body ends when the connection closes: no Content-Length and no chunked
    framing, as the engine answers itself, so every player that plays an engine plays this."""

    # aiohttp chunks an HTTP/1.1 body of unknown length unless length checks are off (as its
    # WebSocket responses have them); the connection is closed after the body instead.
    _length_check = False

    def __init__(self) -> None:
        super().__init__(status=200, headers=STREAM_HEADERS)
        self.force_close()


class _Pusher:
    """Hands blocks to one player's socket while it keeps up: never to a socket with bytes still
    waiting in its transport (those go through the player's own loop, under flow control).

    It also counts what the player was sent, for the channel and the metrics, as it goes: a few
    integer additions per block, and the time to the first stream byte once."""

    __slots__ = ("_channel", "_player", "_tally", "_transport", "sent", "waiting")

    def __init__(self, transport: asyncio.Transport, player: Player) -> None:
        self._transport = transport
        self._player = player
        self._channel = player.channel
        self._tally = player.tally
        self.sent = 0
        self.waiting = True  # for its first byte of stream (keep-alive packets do not count)

    def push(self, chunk: bytes) -> bool:
        transport = self._transport
        if transport.get_write_buffer_size() or transport.is_closing():
            return False
        transport.write(chunk)
        self.count(chunk)
        return True

    def count(self, chunk: bytes) -> None:
        size = len(chunk)
        self.sent += size
        self._channel.bytes_out += size
        self._tally.bytes_out += size
        if self.waiting and chunk != NULL_PACKET:
            self.waiting = False
            waited = time.monotonic() - self._player.joined_at
            self._channel.metrics.time_to_first_byte.observe(waited)


async def send_headers(response: web.StreamResponse, request: web.Request) -> bool:
    """Send the headers; False when the player hung up just as its channel started."""
    try:
        await response.prepare(request)
    except ConnectionError:
        log.info("player_left", bytes=0)
        return False
    return True


async def feed(
    response: web.StreamResponse,
    transport: asyncio.Transport | None,
    player: Player,
    write_timeout_s: float,
) -> bool:
    """Write the channel to the player; True when the stream ended and the player kept up.

    ``transport`` is aiohttp's, typed as asyncio's (uvloop's transports do not subclass it).
    """
    if transport is None:
        log.info("player_left", bytes=0)  # before its headers went out
        return False
    pusher = _Pusher(transport, player)
    drops = player.channel.metrics.player_drops
    try:
        await _copy(response, transport, player.subscriber, pusher, write_timeout_s)
    except ConnectionError:
        log.info("player_left", bytes=pusher.sent)
        return False
    except TimeoutError:
        # Its socket stayed full for the whole write deadline: it stopped reading.
        log.warning("player_dropped", reason="not reading", bytes=pusher.sent)
        drops.labels(reason="not_reading").inc()
        return False
    except PlayerTooSlow as exc:
        log.warning("player_dropped", reason="too slow", detail=str(exc), bytes=pusher.sent)
        drops.labels(reason="too_slow").inc()
        return False
    except BroadcastEnded as exc:
        log.warning("player_stream_ended", reason=exc.reason, bytes=pusher.sent)
        drops.labels(reason=player.channel.end_cause).inc()
    else:
        log.info("player_stream_ended", bytes=pusher.sent)
    return True


async def _copy(
    response: web.StreamResponse,
    transport: asyncio.Transport,
    subscriber: Subscriber,
    pusher: _Pusher,
    write_timeout_s: float,
) -> None:
    """Catch up chunk by chunk while behind the live edge; follow the channel while on it."""
    while (data := subscriber.take()) is not None:
        if not data:
            if transport.is_closing():
                raise ConnectionResetError("the player left")
            # At the live edge: the channel writes to this player itself, until its socket
            # backs up (then the refused chunk is read here, under flow control) or it ends.
            await subscriber.follow(pusher.push)
            continue
        if _fits(transport, len(data)):
            await response.write(data)  # cannot pause the transport: no timer needed
        else:
            # The player's socket is backed up: this write may wait, but not forever.
            async with asyncio.timeout(write_timeout_s):
                await response.write(data)
        pusher.count(data)


async def finish(
    response: web.StreamResponse,
    transport: asyncio.Transport | None,
    finished: bool,
    timeout_s: float,
) -> None:
    """End the connection once the player no longer counts for its channel: a player whose
    stream ended cleanly gets the end of the body (within ``timeout_s``, the same deadline as a
    write, so a client that stopped reading cannot hold it); any other is cut off at once."""
    if finished:
        try:
            async with asyncio.timeout(timeout_s):
                await response.write_eof()
            return
        except (ConnectionError, TimeoutError):
            log.info("player_not_reading_at_end")
    if transport is not None and not transport.is_closing():
        transport.abort()  # a gone, stuck or dropped player: drop the connection at once


def _fits(transport: asyncio.Transport, size: int) -> bool:
    """Whether writing ``size`` bytes keeps the transport under its high-water mark, so the write
    returns without waiting (a timer per write costs more than the copy itself)."""
    if transport.is_closing():
        return False
    low, high = transport.get_write_buffer_limits()
    held = transport.get_write_buffer_size()
    # At or under the low-water mark the transport is not paused; under the high-water mark
    # after this write it will not pause.
    return held <= low and held + size <= high
