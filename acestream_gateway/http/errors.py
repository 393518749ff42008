"""HTTP errors as JSON with a reason; domain failures are translated here and nowhere else."""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from ..logs import get_logger
from ..streaming.errors import (
    ChannelClosed,
    ChannelError,
    EngineFailed,
    EngineRefusedChannel,
    NoEngine,
    TooManyStarting,
)
from .content import BadInput

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(
    status: int,
    error: str,
    detail: str,
    retry_after_s: float | None = None,
    reason: str | None = None,
) -> web.Response:
    """``{"error": kind, "reason": code, "detail": text}``; ``reason`` is a provisioning block
    code (``docker_unavailable``, ``circuit_breaker``...) where one applies."""
    headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))} if retry_after_s else None
    body = {"error": error, "detail": detail}
    if reason is not None:
        body["reason"] = reason
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id (the caller's ``X-Request-ID`` or a new one) to every log event."""
    request_id = request.headers.get("X-Request-ID", "")[:64] or secrets.token_hex(6)
    # The path as sent (percent-encoded, so no decoded line break), without the query string
    # (which may carry a player's token).
    structlog.contextvars.bind_contextvars(request_id=request_id, path=request.rel_url.raw_path)
    return await handler(request)


# The kind of error an HTTP status stands for, in the ``error`` field of the answer.
_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer domain failures that happen before a response started with a JSON reason, and
    aiohttp's own errors (unknown path, wrong method...) the same way."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        return http_error(exc)
    except BadInput as exc:
        return json_error(400, "bad_request", str(exc))
    except UnicodeError:
        # The HTTP parser keeps a header's undecodable bytes as lone surrogates; whatever then
        # needs the header as text fails on them. The request is bad, not the gateway.
        log.info("request_undecodable")
        return json_error(400, "bad_request", "a header of the request is not valid UTF-8")
    except ChannelError as exc:
        response = channel_error(exc)
        log.warning("stream_refused", status=response.status, reason=exc.reason)
        return response


def http_error(exc: web.HTTPException) -> web.Response:
    """An aiohttp HTTP error as JSON, keeping the headers that matter (``Allow`` of a 405)."""
    kind = _KINDS.get(exc.status, "error")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"{exc.method} is not allowed here (allowed: {allowed})"
    elif exc.status == 404:
        detail = "no such endpoint"
    elif exc.text and exc.text != f"{exc.status}: {exc.reason}":
        detail = exc.text  # a reason given where the error was raised
    else:
        detail = exc.reason
    response = json_error(exc.status, kind, detail)
    for name in ("Allow", "WWW-Authenticate", "Retry-After"):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


def channel_error(exc: ChannelError) -> web.Response:
    """The answer to a player whose channel could not start."""
    if isinstance(exc, NoEngine):
        return json_error(503, "no_capacity", exc.reason, exc.retry_after_s, exc.code)
    if isinstance(exc, EngineRefusedChannel):
        return json_error(502, "engine_refused", exc.reason)
    if isinstance(exc, TooManyStarting):
        return json_error(503, "busy", exc.reason, exc.retry_after_s, "too_many_starting")
    if isinstance(exc, ChannelClosed):
        return json_error(503, "shutting_down", exc.reason, 5)
    if isinstance(exc, EngineFailed):
        return json_error(502, "engine_error", exc.reason)
    return json_error(502, "engine_error", exc.reason)
