"""The connection guard alone: a connection that never finishes its request's headers is closed
at its deadline and one that does is never closed by it; connections count per client (an IPv6
client by its prefix) and past the cap they are marked to be refused; a closed one no longer
counts."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web

from acestream_gateway.http.connections import ConnectionGuard


class Transport:
    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None


class Handler:
    def __init__(self) -> None:
        self.closed = False

    def force_close(self) -> None:
        self.closed = True


def connect(guard: ConnectionGuard, peer: Any) -> web.RequestHandler:
    handler = cast(web.RequestHandler, Handler())
    guard.opened(handler, cast(asyncio.Transport, Transport(peer)))
    return handler


def closed(handler: web.RequestHandler) -> bool:
    return cast(Handler, handler).closed


async def test_only_a_connection_without_complete_headers_is_closed_at_its_deadline() -> None:
    guard = ConnectionGuard(header_timeout_s=0.05, max_per_client=10)
    silent = connect(guard, ("192.0.2.1", 1000))
    playing = connect(guard, ("192.0.2.1", 1001))
    assert guard.request_started(playing)
    await asyncio.sleep(0.15)
    assert closed(silent)
    assert not closed(playing)


async def test_past_the_cap_a_clients_connections_are_refused_until_one_closes() -> None:
    guard = ConnectionGuard(header_timeout_s=60, max_per_client=2)
    first = connect(guard, ("192.0.2.1", 1000))
    second = connect(guard, ("::ffff:192.0.2.1", 1001, 0, 0))
    third = connect(guard, ("192.0.2.1", 1002))
    other = connect(guard, ("192.0.2.2", 1000))
    assert guard.held_by("192.0.2.1") == 3
    assert guard.request_started(first)
    assert guard.request_started(second)
    assert not guard.request_started(third)
    assert guard.request_started(other)
    for handler in (first, third):
        guard.closed(handler)
    assert guard.held_by("192.0.2.1") == 1
    assert guard.request_started(connect(guard, ("192.0.2.1", 1003)))
    for handler in (second, other):
        guard.closed(handler)


async def test_an_ipv6_clients_connections_count_for_its_prefix() -> None:
    guard = ConnectionGuard(header_timeout_s=60, max_per_client=2, ipv6_prefix=64)
    handlers = [connect(guard, (f"2001:db8:0:1::{n}", 1000, 0, 0)) for n in range(1, 4)]
    assert [guard.request_started(h) for h in handlers] == [True, True, False]
    assert guard.request_started(connect(guard, ("2001:db8:0:2::1", 1000, 0, 0)))
    assert guard.held_by("2001:db8:0:1::/64") == 3


async def test_a_connection_without_a_peer_address_still_counts_and_closes() -> None:
    guard = ConnectionGuard(header_timeout_s=0.05, max_per_client=1)
    handler = connect(guard, None)  # a Unix socket has no address
    assert guard.held_by("") == 1
    await asyncio.sleep(0.15)
    assert closed(handler)
    guard.closed(handler)
    assert guard.held_by("") == 0
