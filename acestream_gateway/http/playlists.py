"""``POST /playlist.m3u``: a playlist back with its AceStream links pointing at this gateway."""

from __future__ import annotations

from aiohttp import web

from ..ops.playlist import rewrite
from .keys import SETTINGS

routes = web.RouteTableDef()


@routes.post("/playlist.m3u")
async def rewrite_playlist(request: web.Request) -> web.Response:
    """The M3U body, its links rewritten to player URLs of PUBLIC_BASE_URL, else of the Host the
    request came to; nothing is fetched."""
    base = request.app[SETTINGS].public_base_url or f"{request.scheme}://{request.host}"
    body = rewrite(await request.read(), base)
    return web.Response(body=body, headers={"Content-Type": "audio/x-mpegurl"})
