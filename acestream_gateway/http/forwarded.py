"""The client behind a trusted reverse proxy: its address replaces the proxy's for the request.

Only with TRUSTED_PROXIES set (the middleware is not installed otherwise): a request from one of
them is seen with ``remote`` set to the client ``X-Forwarded-For`` names (``ops.clients``), so the
start limit, the key refusals and the logs count and name the client, not the proxy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..ops.clients import forwarded_client
from .keys import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def forwarded_remote(request: web.Request, handler: Handler) -> web.StreamResponse:
    trusted = request.app[SETTINGS].trusted_proxies
    forwarded_for = ",".join(request.headers.getall("X-Forwarded-For", ()))
    client = forwarded_client(request.remote, forwarded_for, trusted)
    if client is None or client == request.remote:
        return await handler(request)
    return await handler(request.clone(remote=client))
