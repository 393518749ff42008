"""What players call: ``/ace/getstream`` (GET streams, HEAD only probes).

The player's connection is written by ``streamout`` (the headers, the channel's blocks, the end).
Nothing is written to a player before its channel has started (a failure still gets a JSON
answer), and aiohttp does not cancel a handler whose client went away: while the player waits,
its connection is watched, and a player that hangs up gives its place back at once. Hanging up is
zapping, an info line (``player_left``), never an error.
"""

from __future__ import annotations

import asyncio
import functools

from aiohttp import web

from ..logs import get_logger
from ..streaming.errors import PlayerLeft
from .auth import player_token_refusal
from .content import parse_content
from .keys import REGISTRY, SETTINGS
from .start_limit import start_refusal
from .streamout import STREAM_HEADERS, LiveResponse, feed, finish, send_headers

log = get_logger(__name__)

_GONE_POLL_S = 0.25
"""How often a player's connection is looked at while it waits for its channel's start."""

routes = web.RouteTableDef()


@routes.route("HEAD", "/ace/getstream")
async def probe_stream(request: web.Request) -> web.StreamResponse:
    """Players probe before playing; answer like the stream would, without touching an engine."""
    parse_content(request.query, allow_url=request.app[SETTINGS].allow_url_input)
    refusal = player_token_refusal(request)
    return refusal or web.Response(status=200, headers=STREAM_HEADERS)


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
            if not await send_headers(response, request):
                return response
            finished = await feed(response, request.transport, player, settings.stall_timeout_s)
    except PlayerLeft:
        log.info("player_left", bytes=0)
        return response
    # The player no longer counts for the channel; its connection still must not hang on a
    # client that stopped reading: the end of the response gets the same deadline as a write.
    await finish(response, request.transport, finished, settings.stall_timeout_s)
    return response


async def _gone(request: web.Request) -> None:
    """Return once the player's connection has closed (reset, or closed by the player).

    aiohttp tells a handler nothing when its client goes away; its transport is dropped, so it
    is looked at, only while the player waits for its channel's start (a player that streams
    is seen going away by its writes). There is no event to wait for instead."""
    while (transport := request.transport) is not None and not transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(_GONE_POLL_S)
