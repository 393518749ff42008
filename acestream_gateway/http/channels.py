"""The lineup for players and operators: ``/channels.m3u``, ``/channels`` (JSON),
``/channels/status`` and the guide, ``/epg.xml``.

Each channel is played at ``/channel/<number>`` on the address the request came to (or
PUBLIC_BASE_URL); a request that carries the right player token gets it back in the links, and
no one learns it here.
"""

from __future__ import annotations

import datetime
from urllib.parse import urlencode

from aiohttp import web

from ..ops.auth import Verdict
from ..ops.lineup.service import ChannelService
from ..ops.lineup.sources import SourceView
from ..ops.players import token_verdict
from .auth import read
from .errors import json_error
from .keys import SETTINGS

CHANNELS = web.AppKey("channels", ChannelService)

routes = web.RouteTableDef()


def base_url(request: web.Request) -> str:
    """PUBLIC_BASE_URL, else the scheme and Host the request came to."""
    public = request.app[SETTINGS].public_base_url
    return (public or f"{request.scheme}://{request.host}").rstrip("/")


def carried_token(request: web.Request) -> str | None:
    """The request's ``token`` when PLAYER_TOKEN is set and it is the right one."""
    secret = request.app[SETTINGS].player_token
    given = request.query.get("token")
    if secret is None or given is None:
        return None
    allowed = token_verdict(secret.get_secret_value(), given) is Verdict.ALLOWED
    return given if allowed else None


def _m3u_attribute(value: str) -> str:
    return value.replace('"', "'").replace("\r", " ").replace("\n", " ")


def _m3u_name(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


@routes.get("/channels.m3u")
async def channels_m3u(request: web.Request) -> web.Response:
    """One entry per channel of the lineup, pointing at this gateway's ``/channel/<number>``."""
    service = request.app[CHANNELS]
    base = base_url(request)
    token = carried_token(request)
    query = f"?{urlencode({'token': token})}" if token else ""
    header = "#EXTM3U"
    if service.guide is not None:
        header += f' url-tvg="{base}/epg.xml{query}" x-tvg-url="{base}/epg.xml{query}"'
    lines = [header]
    for channel in service.lineup.channels:
        attributes = {
            "tvg-id": channel.tvg_id,
            "tvg-chno": str(channel.number),
            "tvg-name": channel.name,
            "tvg-logo": channel.logo,
            "group-title": channel.group,
        }
        shown = " ".join(f'{k}="{_m3u_attribute(v)}"' for k, v in attributes.items() if v)
        lines.append(f"#EXTINF:-1 {shown},{_m3u_name(channel.name)}")
        lines.append(f"{base}/channel/{channel.number}{query}")
    body = "\n".join(lines) + "\n"
    return web.Response(text=body, headers={"Content-Type": "audio/x-mpegurl; charset=utf-8"})


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds")


def _source(view: SourceView) -> dict[str, object]:
    return {"id": view.ref.value, "state": view.state.value, "bad_until": _iso(view.bad_until)}


@routes.get("/channels")
@read
async def channels(request: web.Request) -> web.Response:
    """The lineup: number, name, ``tvg_id``, group and each source's state."""
    service = request.app[CHANNELS]
    body = [
        {
            "number": channel.number,
            "name": channel.name,
            "tvg_id": channel.tvg_id or None,
            "group": channel.group or None,
            "sources": [_source(view) for view in service.sources(channel).views()],
        }
        for channel in service.lineup.channels
    ]
    return web.json_response(body)


@routes.get("/channels/status")
@read
async def channels_status(request: web.Request) -> web.Response:
    """How the last loads of the channel list and the guide went (errors, skipped entries)."""
    return web.json_response(request.app[CHANNELS].status())


@routes.get("/epg.xml")
async def epg(request: web.Request) -> web.Response:
    """The guide, limited to the lineup's channels, their ids the lineup's numbers."""
    guide = request.app[CHANNELS].guide
    if guide is None:
        return json_error(
            404, "not_found", "no guide: set EPG_URL or EPG_FILE, or name one in the list"
        )
    return web.Response(body=guide, headers={"Content-Type": "application/xml; charset=utf-8"})
