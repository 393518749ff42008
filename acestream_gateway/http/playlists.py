"""``POST /playlist.m3u``: a playlist back with its AceStream links pointing at this gateway."""

from __future__ import annotations

from aiohttp import web

from ..ops.auth import Verdict
from ..ops.players import token_verdict
from ..ops.playlist import rewrite
from .keys import SETTINGS

routes = web.RouteTableDef()


def _player_token(request: web.Request) -> str | None:
    """The player token the links must carry, when PLAYER_TOKEN is set: only a request that
    itself gives the right ``?token=`` gets it back in the links (no one learns it here)."""
    secret = request.app[SETTINGS].player_token
    if secret is None:
        return None
    given = request.query.get("token")
    expected = secret.get_secret_value()
    return given if token_verdict(expected, given) is Verdict.ALLOWED else None


@routes.post("/playlist.m3u")
async def rewrite_playlist(request: web.Request) -> web.Response:
    """The M3U body, its links rewritten to player URLs of PUBLIC_BASE_URL, else of the Host the
    request came to; nothing is fetched."""
    settings = request.app[SETTINGS]
    base = settings.public_base_url or f"{request.scheme}://{request.host}"
    body = rewrite(await request.read(), base, _player_token(request))
    return web.Response(body=body, headers={"Content-Type": "audio/x-mpegurl"})
