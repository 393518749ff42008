"""Bounds on connections before they are requests: a header deadline and a per-client count.

aiohttp closes a connection that stays idle for its keep-alive timeout, but has no bound of its
own on how long a new connection may take to send its request's headers, and none on how many
connections one client holds: a few thousand silent or trickling connections would exhaust the
gateway's file descriptors. Here every new connection gets a deadline (CLIENT_HEADER_TIMEOUT_S,
like nginx's ``client_header_timeout``) that is cancelled when its first request's headers have
been parsed, so a player whose stream has begun is never cut by it; later requests on a kept-alive
connection are bounded by aiohttp's keep-alive timeout (KEEPALIVE_TIMEOUT_S), which closes a
connection still waiting for a complete request when it expires. Connections past
MAX_CONNECTIONS_PER_CLIENT get a short ``429`` to their request and are closed; one that sends
nothing is closed after a few seconds.

aiohttp's ``Server`` is the place both fit: every connection's handler reports to it when it opens
and closes (``connection_made``/``connection_lost``), and it hands each parsed request to its
``request_handler``. ``GuardedServer`` is that server with the guard in those three places;
``GuardedRunner`` is aiohttp's ``AppRunner`` with the application's server wrapped in it. The
server's connections are handled by ``GatewayRequestHandler``, which answers what the HTTP
parser refused with JSON too.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

from ..logs import get_logger
from ..ops.clients import client_key
from .errors import json_error

log = get_logger(__name__)

REFUSED_GRACE_S = 5.0
"""Seconds a connection past the per-client cap has to send its request (and be told why it is
refused) before it is closed without an answer."""


class ConnectionGuard:
    """Each open connection's header deadline, and how many connections each client holds."""

    def __init__(
        self, *, header_timeout_s: float, max_per_client: int, ipv6_prefix: int = 64
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_per_client = max_per_client
        self.ipv6_prefix = ipv6_prefix
        self._clients: dict[web.RequestHandler, str] = {}
        self._counts: Counter[str] = Counter()
        self._deadlines: dict[web.RequestHandler, asyncio.TimerHandle] = {}
        self._refused: set[web.RequestHandler] = set()

    def held_by(self, client: str) -> int:
        """Connections the client (``ops.clients.client_key``) holds now."""
        return self._counts[client]

    def opened(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        """Count a new connection for its client and start its header deadline."""
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        client = client_key(address, self.ipv6_prefix)
        self._clients[handler] = client
        self._counts[client] += 1
        timeout_s = self.header_timeout_s
        if self._counts[client] > self.max_per_client:
            self._refused.add(handler)
            timeout_s = min(timeout_s, REFUSED_GRACE_S)
            if self._counts[client] == self.max_per_client + 1:
                log.warning("client_connections_capped", peer=address, limit=self.max_per_client)
        loop = asyncio.get_running_loop()
        self._deadlines[handler] = loop.call_later(timeout_s, self._expire, handler, address)

    def request_started(self, handler: web.RequestHandler) -> bool:
        """A request's headers were parsed: its connection's deadline is over. False when the
        connection is past its client's cap (the request is to be refused)."""
        deadline = self._deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()
        return handler not in self._refused

    def closed(self, handler: web.RequestHandler) -> None:
        """The connection is gone: it no longer counts."""
        deadline = self._deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()
        self._refused.discard(handler)
        client = self._clients.pop(handler, None)
        if client is None:
            return
        self._counts[client] -= 1
        if self._counts[client] <= 0:
            del self._counts[client]

    def _expire(self, handler: web.RequestHandler, address: str | None) -> None:
        self._deadlines.pop(handler, None)
        log.debug("connection_header_timeout", peer=address, timeout_s=self.header_timeout_s)
        handler.force_close()


class GatewayRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering what never became a request (a request line or
    header the HTTP parser refused) with JSON like every other error, logged as the client's
    mistake it is rather than with a traceback at error level."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            super().handle_error(request, status, exc, message)  # a fault of ours: logged
            response = json_error(status, "internal_error", "the gateway failed on this request")
        else:
            if request.writer.output_size > 0:
                raise ConnectionError("an answer was sent already")
            reason = (message or str(exc) or "").strip().split("\n")[0][:200]
            log.info("request_malformed", peer=request.remote, status=status, reason=reason)
            response = json_error(status, "bad_request", f"not a valid HTTP request: {reason}")
        response.force_close()
        return response


class GuardedServer(web.Server):
    """The application's server with a :class:`ConnectionGuard` on every connection."""

    def __init__(self, app_server: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(
            self._handle,
            request_factory=app_server.request_factory,
            handler_cancellation=app_server.handler_cancellation,
            **kwargs,
        )
        self._app_handler = app_server.request_handler
        self._guard = guard
        self._handler_options = kwargs

    def __call__(self) -> web.RequestHandler:
        loop = asyncio.get_running_loop()
        return GatewayRequestHandler(self, loop=loop, **self._handler_options)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._guard.opened(handler, transport)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._guard.closed(handler)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._guard.request_started(request.protocol):
            return await self._app_handler(request)
        limit = self._guard.max_per_client
        log.info("connection_refused", peer=request.remote, limit=limit)
        detail = f"this client holds {limit} connections already (MAX_CONNECTIONS_PER_CLIENT)"
        response = json_error(429, "too_many_connections", detail, retry_after_s=REFUSED_GRACE_S)
        response.force_close()
        return response


class GuardedRunner(web.AppRunner):
    """aiohttp's ``AppRunner`` whose server is a :class:`GuardedServer`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard
        # What the connections' handlers are made with (the server's own options aside).
        self._handler_kwargs = {
            key: value
            for key, value in kwargs.items()
            if key not in ("handle_signals", "shutdown_timeout", "handler_cancellation")
        }

    async def _make_server(self) -> web.Server:
        app_server = await super()._make_server()  # starts the application
        return GuardedServer(app_server, self._guard, **self._handler_kwargs)
