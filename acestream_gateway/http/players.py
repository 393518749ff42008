"""What players call: ``/ace/getstream`` (GET streams, HEAD only probes)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..logs import get_logger
from ..streaming.broadcast import BroadcastEnded, PlayerTooSlow
from ..streaming.registry import Player
from .content import parse_content
from .keys import REGISTRY, SETTINGS

log = get_logger(__name__)

routes = web.RouteTableDef()

_STREAM_HEADERS = {
    "Content-Type": "video/mp2t",
    "Cache-Control": "no-cache, no-store",
    "Accept-Ranges": "none",
}


@routes.route("HEAD", "/ace/getstream")
async def probe_stream(request: web.Request) -> web.StreamResponse:
    """Players probe before playing; answer like the stream would, without touching an engine."""
    parse_content(request.query, allow_url=request.app[SETTINGS].allow_url_input)
    return web.Response(status=200, headers=_STREAM_HEADERS)


@routes.get("/ace/getstream", allow_head=False)
async def get_stream(request: web.Request) -> web.StreamResponse:
    """Stream a channel: join its shared engine session, or start one."""
    settings = request.app[SETTINGS]
    content = parse_content(request.query, allow_url=settings.allow_url_input)
    log.info("player_joining", content=content.key, peer=request.remote)
    async with request.app[REGISTRY].play(content) as player:
        response = web.StreamResponse(status=200, headers=_STREAM_HEADERS)
        await response.prepare(request)
        finished = await _feed(response, request.transport, player, settings.stall_timeout_s)
    # The player no longer counts for the channel; its connection still must not hang on a
    # client that stopped reading: the end of the response gets the same deadline as a write.
    await _finish(response, request.transport, finished, settings.stall_timeout_s)
    return response


async def _feed(
    response: web.StreamResponse,
    transport: asyncio.BaseTransport | None,
    player: Player,
    write_timeout_s: float,
) -> bool:
    """Write the channel to the player; True when the stream ended and the player kept up."""
    sent = 0
    try:
        async for data in player.chunks():
            if _fits(transport, len(data)):
                await response.write(data)  # cannot pause the transport: no timer needed
            else:
                # The player's socket is backed up: this write may wait, but not forever.
                async with asyncio.timeout(write_timeout_s):
                    await response.write(data)
            sent += len(data)
    except (ConnectionError, TimeoutError):
        log.info("player_left", bytes=sent)
        return False
    except PlayerTooSlow as exc:
        log.warning("player_dropped", reason="too slow", detail=str(exc), bytes=sent)
        return False
    except BroadcastEnded as exc:
        log.warning("player_stream_ended", reason=exc.reason, bytes=sent)
    else:
        log.info("player_stream_ended", bytes=sent)
    return True


async def _finish(
    response: web.StreamResponse,
    transport: asyncio.BaseTransport | None,
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
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.abort()  # a gone, stuck or dropped player: drop the connection at once


def _fits(transport: asyncio.BaseTransport | None, size: int) -> bool:
    """Whether writing ``size`` bytes keeps the transport under its high-water mark, so the write
    returns without waiting (a timer per write costs more than the copy itself)."""
    if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
        return False
    low, high = transport.get_write_buffer_limits()
    held = transport.get_write_buffer_size()
    # At or under the low-water mark the transport is not paused; under the high-water mark
    # after this write it will not pause.
    return held <= low and held + size <= high
