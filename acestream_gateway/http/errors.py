"""HTTP errors as JSON with a reason; domain failures are translated here and nowhere else."""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from ..logs import get_logger
from ..streaming.channel import UpstreamFailed
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
    except UpstreamFailed as exc:
        kind = "no_capacity" if exc.status == 503 else "engine_error"
        log.warning("stream_refused", status=exc.status, reason=exc.reason, code=exc.code)
        return json_error(exc.status, kind, exc.reason, exc.retry_after_s, exc.code)
