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
    structlog.contextvars.bind_contextvars(request_id=request_id, path=request.path)
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer domain failures that happen before a response started with a JSON reason."""
    try:
        return await handler(request)
    except BadInput as exc:
        return json_error(400, "bad_request", str(exc))
    except ChannelError as exc:
        response = channel_error(exc)
        log.warning("stream_refused", status=response.status, reason=exc.reason)
        return response


def channel_error(exc: ChannelError) -> web.Response:
    """The answer to a player whose channel could not start."""
    if isinstance(exc, NoEngine):
        return json_error(503, "no_capacity", exc.reason, exc.retry_after_s, exc.code)
    if isinstance(exc, EngineRefusedChannel):
        return json_error(502, "engine_refused", exc.reason)
    if isinstance(exc, ChannelClosed):
        return json_error(503, "shutting_down", exc.reason, 5)
    if isinstance(exc, EngineFailed):
        return json_error(502, "engine_error", exc.reason)
    return json_error(502, "engine_error", exc.reason)
