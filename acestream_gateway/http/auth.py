"""The API key and player token checks as HTTP answers, with refusals logged and rate-limited.

Every refused key or token is logged with the client's address and the endpoint (never the key);
a client past ``ops.auth.REFUSALS_ALLOWED`` refusals gets ``429`` with ``Retry-After`` before
anything is compared.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..logs import get_logger
from ..ops.auth import MalformedKey, Verdict, decide, presented_key
from ..ops.players import token_verdict
from .errors import json_error
from .keys import REFUSALS, SETTINGS

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_key(request: web.Request) -> None:
    """Raise 401 (no key), 403 (a wrong key), 400 (a key that is no text) or 429 (too many
    wrong keys lately) unless the request may go on."""
    key = request.app[SETTINGS].api_key
    if key is None:
        return
    wait_s = request.app[REFUSALS].retry_after_s(request.remote)
    if wait_s is not None:
        raise web.HTTPTooManyRequests(
            text="too many wrong keys from this client; try again later",
            headers={"Retry-After": str(math.ceil(wait_s))},
        )
    try:
        verdict = decide(key.get_secret_value(), presented_key(request.headers))
    except MalformedKey:
        _refused(request, "api_key_refused", "not UTF-8")
        raise web.HTTPBadRequest(text="the API key is not valid UTF-8") from None
    if verdict is Verdict.MISSING:
        raise web.HTTPUnauthorized(
            text="an API key is required (Authorization: Bearer <key> or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if verdict is Verdict.WRONG:
        _refused(request, "api_key_refused", "wrong")
        raise web.HTTPForbidden(text="the API key is wrong")


def player_token_refusal(request: web.Request) -> web.Response | None:
    """401/403 when PLAYER_TOKEN is set and the query's ``token`` is missing or wrong; 429 when
    the client gave too many wrong ones lately."""
    secret = request.app[SETTINGS].player_token
    if secret is None:
        return None
    wait_s = request.app[REFUSALS].retry_after_s(request.remote)
    if wait_s is not None:
        detail = "too many wrong tokens from this client; try again later"
        return json_error(429, "too_many_refusals", detail, wait_s)
    verdict = token_verdict(secret.get_secret_value(), request.query.get("token"))
    if verdict is Verdict.MISSING:
        return json_error(401, "unauthorized", "this gateway needs its player token: ?token=…")
    if verdict is Verdict.WRONG:
        _refused(request, "player_token_wrong", "wrong")
        return json_error(403, "forbidden", "the player token is wrong")
    return None


def _refused(request: web.Request, event: str, why: str) -> None:
    """Log a refused key or token (who and where, never what) and count it against the client."""
    limited = request.app[REFUSALS].note(request.remote)
    log.warning(event, why=why, peer=request.remote, endpoint=_endpoint(request), limited=limited)


def _endpoint(request: web.Request) -> str:
    """The method and the route's pattern (``/engines/{engine_id}/drain``), not the raw path."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource else request.rel_url.raw_path}"


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
