"""HLS for players that cannot play an endless TS: ``/ace/manifest.m3u8`` and its segments.

The playlist takes the inputs of ``/ace/getstream`` and asks the same questions (token, start
limit); its segments are cut by the gateway from the channel's one shared engine session (see
``streaming.hls``). Segment URLs are relative to the playlist, so they work behind a reverse
proxy, and carry the playlist's query (its player token included).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from aiohttp import web

from ..logs import get_logger
from ..streaming.hls.playlist import render
from ..streaming.hls.window import SegmentMissing
from .auth import player_token_refusal
from .content import parse_content
from .errors import json_error
from .keys import REGISTRY, SETTINGS
from .start_limit import start_refusal

log = get_logger(__name__)

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_PLAYLIST_HEADERS = {"Cache-Control": "no-cache, no-store"}
_SEGMENT_HEADERS = {"Content-Type": "video/mp2t", "Cache-Control": "no-cache"}


@routes.route("HEAD", "/ace/manifest.m3u8")
async def probe_playlist(request: web.Request) -> web.StreamResponse:
    """Players probe before playing; answer without touching an engine."""
    parse_content(request.query, allow_url=request.app[SETTINGS].allow_url_input)
    refusal = player_token_refusal(request)
    return refusal or web.Response(
        status=200, content_type=PLAYLIST_TYPE, headers=_PLAYLIST_HEADERS
    )


@routes.get("/ace/manifest.m3u8", allow_head=False)
async def get_playlist(request: web.Request) -> web.StreamResponse:
    """The channel's live playlist; the first request of a channel starts it and waits for its
    first segment (bounded by FIRST_DATA_TIMEOUT_S)."""
    settings = request.app[SETTINGS]
    content = parse_content(request.query, allow_url=settings.allow_url_input)
    refusal = player_token_refusal(request) or start_refusal(request, content)
    if refusal is not None:
        return refusal
    registry = request.app[REGISTRY]
    channel = registry.watch_hls(content, _client(request), start=True)
    assert channel is not None  # start=True always gives one, with its feed
    feed = channel.hls
    assert feed is not None
    if not feed.ready:
        log.info("hls_waiting_for_first_segment", content=content.key, peer=request.remote)
        with feed.viewers.waiting():
            await channel.wait_started()  # a channel that cannot start raises: JSON from http/
            try:
                async with asyncio.timeout(settings.first_data_timeout_s):
                    ready = await feed.wait_ready()
            except TimeoutError:
                detail = f"no segment could be cut in {settings.first_data_timeout_s:g} s"
                return json_error(504, "no_segment", detail, registry.hls_policy.segment_s)
        if not ready:
            return json_error(502, "engine_error", "the channel ended before its first segment")
    query = urlencode([(k, v) for k, v in request.query.items() if k != "pid"])
    text = render(feed.window.listing(), lambda seq: f"hls/{seq}.ts?{query}")
    return web.Response(text=text, content_type=PLAYLIST_TYPE, headers=_PLAYLIST_HEADERS)


@routes.get(r"/ace/hls/{sequence:\d{1,18}}.ts", allow_head=False)
async def get_segment(request: web.Request) -> web.StreamResponse:
    """One segment of a playing channel's window; 404 with a reason once it left the window."""
    content = parse_content(request.query, allow_url=request.app[SETTINGS].allow_url_input)
    refusal = player_token_refusal(request)
    if refusal is not None:
        return refusal
    registry = request.app[REGISTRY]
    channel = registry.watch_hls(content, _client(request), start=False)
    if channel is None or channel.hls is None:
        return json_error(404, "not_found", "this channel does not play here (fetch its playlist)")
    try:
        segment = channel.hls.window.get(int(request.match_info["sequence"]))
    except SegmentMissing as exc:
        return json_error(404, "not_found", exc.reason)
    channel.bytes_out += len(segment.data)  # handed to a player, like a TS player's bytes
    registry.tally.bytes_out += len(segment.data)
    return web.Response(body=segment.data, headers=_SEGMENT_HEADERS)


def _client(request: web.Request) -> str:
    """Who an HLS player is, for the count of players: its address (the forwarded client's
    behind a trusted proxy)."""
    return request.remote or ""
