"""Engines that answer badly, against the real engine client over loopback HTTP: whatever comes
back is the client's typed error, one bad engine never stops the probing or the stat polling of
the others, and every probe opens a connection of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from acestream_gateway.engines.answers import MAX_ANSWER_BYTES
from acestream_gateway.engines.client import (
    EngineBadAnswer,
    EngineClient,
    EngineSession,
    EngineUnreachable,
)
from acestream_gateway.engines.model import (
    ContentRef,
    Engine,
    EngineAddress,
    EngineState,
    InputKind,
)
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.fleet.health import HealthProber
from acestream_gateway.ops.stats import StatPoller

CONTENT = ContentRef(InputKind.CONTENT_ID, "0123456789abcdef0123456789abcdef01234567")
DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB: under the size cap, past any stack
FINE = json.dumps(
    {
        "result": {"version": "3.2.3", "status": "idle"},
        "response": {
            "playback_url": "http://x/content/1/0",
            "stat_url": "http://x/ace/stat/1",
            "command_url": "http://x/ace/cmd/1",
            "peers": 3,
        },
        "error": None,
    }
).encode()


class AnswerServer:
    """A tiny HTTP/1.1 server on loopback that answers every request with one body, keeps
    connections alive unless asked not to, and counts the connections it accepted."""

    def __init__(self, body: bytes, *, declared_length: int | None = None) -> None:
        self.body = body
        self.declared_length = declared_length  # say this, send the body, then hang up
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> EngineAddress:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return EngineAddress("127.0.0.1", port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = self.declared_length or len(self.body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {length}\r\n\r\n".encode()
                    + self.body
                )
                await writer.drain()
                if self.declared_length or b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Serve = Callable[..., Awaitable[tuple[EngineAddress, AnswerServer]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[AnswerServer] = []

    async def start(body: bytes, **kwargs: Any) -> tuple[EngineAddress, AnswerServer]:
        server = AnswerServer(body, **kwargs)
        servers.append(server)
        return await server.start(), server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[EngineClient]:
    """The client as the app builds it: a shared keep-alive session and a probe session whose
    connector never keeps a connection."""
    async with (
        aiohttp.ClientSession() as http,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as probe_http,
    ):
        yield EngineClient(http, api_timeout_s=5, stop_timeout_s=5, probe_http=probe_http)


def session_at(address: EngineAddress) -> EngineSession:
    base = address.base_url
    return EngineSession(
        address=address,
        pid="p",
        playback_url=f"{base}/content/1/0",
        stat_url=f"{base}/ace/stat/1",
        command_url=f"{base}/ace/cmd/1",
        infohash="",
        playback_session_id="1",
        is_live=True,
    )


def every_call(client: EngineClient, address: EngineAddress) -> list[Awaitable[object]]:
    session = session_at(address)
    return [
        client.status(address, 5),
        client.version(address),
        client.start_session(address, CONTENT, "p"),
        client.stat(session),
        client.stop_session(session),
    ]


async def test_a_deeply_nested_answer_is_a_bad_answer_for_every_call(
    client: EngineClient, serve: Serve
) -> None:
    address, _ = await serve(DEEP)
    for call in every_call(client, address):
        with pytest.raises(EngineBadAnswer, match="nested too deeply"):
            await call


async def test_an_answer_past_the_size_cap_is_refused(client: EngineClient, serve: Serve) -> None:
    padding = "x" * (MAX_ANSWER_BYTES + 1)
    huge = json.dumps({"result": {"version": "3.2.3"}, "padding": padding}).encode()
    address, _ = await serve(huge)
    for call in every_call(client, address):
        with pytest.raises(EngineBadAnswer, match="too large"):
            await call


async def test_a_truncated_answer_is_the_clients_typed_error(
    client: EngineClient, serve: Serve
) -> None:
    address, _ = await serve(FINE[:20], declared_length=len(FINE))
    for call in every_call(client, address):
        with pytest.raises(EngineUnreachable):
            await call


async def test_one_engine_answering_garbage_never_ends_the_health_round_of_the_others(
    client: EngineClient, serve: Serve
) -> None:
    pool = EnginePool(
        max_streams_per_engine=1, max_engines=4, provision_wait_s=0.1, failure_threshold=3
    )
    engines = []
    for name, body in [("deep", DEEP), ("fine", FINE), ("list", b"[1]"), ("nan", b"NaN")]:
        address, _ = await serve(body)
        engine = Engine(id=name, name=name, address=address, state=EngineState.READY)
        pool.add(engine)
        engines.append(engine)
    prober = HealthProber(pool=pool, client=client, interval_s=1, timeout_s=5, concurrency=4)
    for round_ in (1, 2):
        await prober.probe_all()
        assert [pool.failures(e.id) for e in engines] == [round_, 0, round_, round_]


async def test_one_session_answering_garbage_never_ends_the_stat_round_of_the_others(
    client: EngineClient, serve: Serve
) -> None:
    deep, _ = await serve(DEEP)
    fine, _ = await serve(FINE)
    channels = [
        SimpleNamespace(content=SimpleNamespace(key="deep"), session=session_at(deep)),
        SimpleNamespace(content=SimpleNamespace(key="fine"), session=session_at(fine)),
    ]
    poller = StatPoller(channels=lambda: channels, client=client, interval_s=1)  # type: ignore[arg-type,return-value]
    await poller.poll_once()
    assert poller.figures(channels[1]) is not None  # type: ignore[arg-type]
    assert poller.figures(channels[1]).peers == 3  # type: ignore[arg-type,union-attr]
    assert poller.figures(channels[0]) is None  # type: ignore[arg-type]


async def test_every_probe_opens_a_connection_of_its_own(
    client: EngineClient, serve: Serve
) -> None:
    address, server = await serve(FINE)
    session = session_at(address)
    await client.stat(session)
    await client.stat(session)
    assert server.connections == 1, "other calls keep their connection alive"
    for _ in range(3):
        await client.status(address, 5)
    for _ in range(2):
        await client.version(address)
    assert server.connections == 1 + 5, "each probe came on a new connection"
    await client.stat(session)
    assert server.connections == 6, "the kept-alive connection is still there for other calls"
