"""The API key check of the management and protected read endpoints, as HTTP answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..ops.auth import Verdict, decide, presented_key
from .keys import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_key(request: web.Request) -> None:
    """Raise 401 (no key) or 403 (a wrong key) unless the request may go on."""
    key = request.app[SETTINGS].api_key
    verdict = decide(key.get_secret_value() if key else None, presented_key(request.headers))
    if verdict is Verdict.MISSING:
        raise web.HTTPUnauthorized(
            text="an API key is required (Authorization: Bearer <key> or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if verdict is Verdict.WRONG:
        raise web.HTTPForbidden(text="the API key is wrong")


def management(handler: Handler) -> Handler:
    """A handler that always needs the API key (when one is set)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        check_key(request)
        return await handler(request)

    guarded.__doc__ = handler.__doc__
    return guarded


def read(handler: Handler) -> Handler:
    """A read handler that needs the API key when PROTECT_READS is on."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.app[SETTINGS].protect_reads:
            check_key(request)
        return await handler(request)

    guarded.__doc__ = handler.__doc__
    return guarded
