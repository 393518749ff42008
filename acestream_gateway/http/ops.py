"""What operators and orchestrators call: liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from .keys import POOL

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Readiness: an engine can take a new channel now."""
    pool = request.app[POOL]
    ready = pool.has_room()
    capacity = pool.capacity()
    body = {"ready": ready, "engines": capacity.total, "engines_used": capacity.used}
    return web.json_response(body, status=200 if ready else 503)
