"""What runs, for operators and for acexy's clients: ``/engines``, ``/streams``, ``/ace/status``."""

from __future__ import annotations

import time

from aiohttp import web

from ..ops import listings
from ..streaming.channel import Channel
from .auth import read
from .content import BadInput, parse_content
from .errors import json_error
from .keys import POOL, REGISTRY, STAT_POLLER
from .stations import STATIONS

routes = web.RouteTableDef()


def _channels(app: web.Application) -> list[Channel]:
    return app[REGISTRY].channels() if REGISTRY in app else []


@routes.get("/engines")
@read
async def engines(request: web.Request) -> web.Response:
    """Every engine: state, health, address, streams, players, times, VPN."""
    clocks = listings.Clocks(wall=time.time(), mono=time.monotonic())
    body = listings.engines_listing(request.app[POOL].snapshot(), _channels(request.app), clocks)
    return web.json_response(body)


@routes.get("/streams")
@read
async def streams(request: web.Request) -> web.Response:
    """Every open channel with the engine's last figures of its session (never asked now)."""
    poller = request.app.get(STAT_POLLER)
    body = listings.streams_listing(
        _channels(request.app),
        poller.figures if poller is not None else lambda c: None,
        request.app[STATIONS].all() if STATIONS in request.app else [],
    )
    return web.json_response(body)


@routes.get("/ace/status")
@read
async def ace_status(request: web.Request) -> web.Response:
    """acexy's status: the number of streams, or with ``id`` / ``infohash`` that one's players."""
    query = {k: v for k, v in request.query.items() if k in ("id", "content_id", "infohash")}
    try:
        wanted = parse_content(query, allow_url=False) if query else None
    except BadInput as exc:
        return json_error(400, "bad_request", str(exc))
    body = listings.acexy_status(_channels(request.app), wanted)
    if body is None:
        return json_error(404, "not_found", "no stream of that content")
    return web.json_response(body)
