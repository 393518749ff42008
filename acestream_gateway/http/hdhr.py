"""The gateway as an HDHomeRun network tuner: ``/discover.json``, ``/lineup.json``,
``/lineup_status.json``, ``/device.xml`` and ``POST /lineup.post``.

Its channels are played at ``/auto/v<number>``. The identity is the same on every start
(HDHR_DEVICE_ID, else derived from the instance name); the base URL is PUBLIC_BASE_URL or the
Host the request came to.
"""

from __future__ import annotations

from aiohttp import web

from ..ops import hdhr
from .channels import CHANNELS, base_url, carried_token
from .errors import json_error

HDHR_IDENTITY = web.AppKey("hdhr_identity", hdhr.Identity)

routes = web.RouteTableDef()


@routes.get("/discover.json")
async def discover(request: web.Request) -> web.Response:
    """Who the tuner is and where its lineup is."""
    return web.json_response(hdhr.discover(request.app[HDHR_IDENTITY], base_url(request)))


@routes.get("/lineup.json")
async def lineup(request: web.Request) -> web.Response:
    """Every channel's number, name and URL (``?show=`` is accepted and changes nothing: every
    channel of the list is found and none is hidden)."""
    channels = request.app[CHANNELS].lineup
    return web.json_response(hdhr.lineup(channels, base_url(request), carried_token(request)))


@routes.get("/lineup_status.json")
async def lineup_status(request: web.Request) -> web.Response:
    """Never scanning: the lineup is the channel list."""
    return web.json_response(hdhr.lineup_status())


@routes.get("/device.xml")
async def device_xml(request: web.Request) -> web.Response:
    """The UPnP device description."""
    body = hdhr.device_xml(request.app[HDHR_IDENTITY], base_url(request))
    return web.Response(text=body, content_type="application/xml", charset="utf-8")


@routes.post("/lineup.post")
async def lineup_post(request: web.Request) -> web.Response:
    """``scan=start`` and ``scan=abort`` answered as a tuner does (200, empty): the scan is
    over at once, its result the channel list. Anything else is a 400."""
    if request.query.get("scan") in ("start", "abort"):
        return web.Response(status=200)
    return json_error(400, "bad_request", "lineup.post takes scan=start or scan=abort")
