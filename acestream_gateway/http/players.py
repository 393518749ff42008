"""What players call: ``/ace/getstream`` (GET streams, HEAD only probes).

The stream's body ends when the connection closes, exactly like the engine's own stream (no
chunked framing), so a player's bytes are the channel's shared blocks as they are: a player at
the live edge is handed each block by the channel itself, straight to its socket, in one pass
over all such players (see ``streaming.broadcast``); only a player behind the live edge (joining,
or catching up after its socket filled) runs its own loop, with flow control and a deadline.

Nothing is written to a player before its channel has started (a failure still gets a JSON
answer), and aiohttp does not cancel a handler whose client went away: while the player waits,
its connection is watched, and a player that hangs up gives its place back at once. Hanging up is
zapping, an info line (``player_left``), never an error.
"""

from __future__ import annotations

import asyncio
import functools
import time

from aiohttp import web

from ..logs import get_logger
from ..streaming.broadcast import BroadcastEnded, PlayerTooSlow, Subscriber
from ..streaming.errors import PlayerLeft
from ..streaming.mpegts import NULL_PACKET
from ..streaming.registry import Player
from .auth import player_token_refusal
from .content import parse_content
from .keys import REGISTRY, SETTINGS
from .start_limit import start_refusal

log = get_logger(__name__)

_GONE_POLL_S = 0.25
"""How often a player's connection is looked at while it waits for its channel's start."""

routes = web.RouteTableDef()

_STREAM_HEADERS = {
    "Content-Type": "video/mp2t",
    "Cache-Control": "no-cache, no-store",
    "Accept-Ranges": "none",
}


class LiveResponse(web.StreamResponse):
    """A response whose body ends when the connection closes: no Content-Length and no chunked
    framing, as the engine answers itself, so every player that plays an engine plays this."""

    # aiohttp chunks an HTTP/1.1 body of unknown length unless length checks are off (as its
    # WebSocket responses have them); the connection is closed after the body instead.
    _length_check = False

    def __init__(self) -> None:
        super().__init__(status=200, headers=_STREAM_HEADERS)
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


@routes.route("HEAD", "/ace/getstream")
async def probe_stream(request: web.Request) -> web.StreamResponse:
    """Players probe before playing; answer like the stream would, without touching an engine."""
    parse_content(request.query, allow_url=request.app[SETTINGS].allow_url_input)
    refusal = player_token_refusal(request)
    return refusal or web.Response(status=200, headers=_STREAM_HEADERS)


@routes.get("/ace/getstream", allow_head=False)
async def get_stream(request: web.Request) -> web.StreamResponse:
    """Stream a channel: join its shared engine session, or start one."""
    settings = request.app[SETTINGS]
    content = parse_content(request.query, allow_url=settings.allow_url_input)
    refusal = player_token_refusal(request) or start_refusal(request, content)
    if refusal is not None:
        return refusal
    log.info("player_joining", content=content.key, peer=request.remote)
    # A player that hung up before its headers went out gets this answer unsent: aiohttp finds
    # the connection closed and lets it go quietly.
    response = LiveResponse()
    try:
        async with request.app[REGISTRY].play(content, functools.partial(_gone, request)) as player:
            if not await _prepared(response, request):
                return response
            finished = await _feed(response, request.transport, player, settings.stall_timeout_s)
    except PlayerLeft:
        log.info("player_left", bytes=0)
        return response
    # The player no longer counts for the channel; its connection still must not hang on a
    # client that stopped reading: the end of the response gets the same deadline as a write.
    await _finish(response, request.transport, finished, settings.stall_timeout_s)
    return response


async def _gone(request: web.Request) -> None:
    """Return once the player's connection has closed (reset, or closed by the player).

    aiohttp tells a handler nothing when its client goes away; its transport is dropped, so it
    is looked at, only while the player waits for its channel's start (a player that streams
    is seen going away by its writes). There is no event to wait for instead."""
    while (transport := request.transport) is not None and not transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(_GONE_POLL_S)


async def _prepared(response: web.StreamResponse, request: web.Request) -> bool:
    """Send the headers; False when the player hung up just as its channel started."""
    try:
        await response.prepare(request)
    except ConnectionError:
        log.info("player_left", bytes=0)
        return False
    return True


async def _feed(
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


async def _finish(
    response: web.StreamResponse,
    transport: asyncio.Transport | None,
    finished: bool,
    timeout_s: float,
) -> None:
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
