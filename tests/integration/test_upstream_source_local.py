"""How an engine's stream body reaches the channel (``streaming.source``): an unframed body is
read straight from the socket, any other framing through aiohttp; on both event loops, every
byte arrives once and in order, including bytes that came with the headers, and the end of the
body (clean or broken) is told apart."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from acestream_gateway.eventloop import loop_factory
from acestream_gateway.streaming import source
from acestream_gateway.streaming.source import Source, open_source

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]

LOOPS = ["asyncio", "uvloop"]
RAW_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n"


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    _, factory = loop_factory("uvloop" if loop == "uvloop" else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


@asynccontextmanager
async def engine(script: Script) -> AsyncIterator[str]:
    """A one-shot HTTP server on 127.0.0.1 that answers any request with ``script``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await script(writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/stream"
    finally:
        server.close()
        await server.wait_closed()


def collect(loop: str, script: Script) -> tuple[type[Source], bytes, BaseException | None]:
    """Play ``script`` as the engine and read its body through a source, to its end."""
    outcome: list[tuple[type[Source], bytes, BaseException | None]] = []

    async def main() -> None:
        received = bytearray()
        async with engine(script) as url, aiohttp.ClientSession() as http:
            response = await http.get(url)
            try:
                src = open_source(response, received.extend)
                error = await asyncio.wait_for(src.ended(), 10)
            finally:
                response.close()
        outcome.append((type(src), bytes(received), error))

    run(loop, main)
    return outcome[0]


BODY = [bytes([i]) * 5000 for i in range(1, 30)]


@pytest.mark.parametrize("loop", LOOPS)
def test_an_unframed_body_is_read_from_the_socket_every_byte_once_in_order(loop: str) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(RAW_HEAD + BODY[0])  # the first bytes come with the headers
        for piece in BODY[1:]:
            await asyncio.sleep(0.002)
            writer.write(piece)
            await writer.drain()

    assert collect(loop, script) == (source._Socket, b"".join(BODY), None)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    ("head", "framed"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            lambda b: b"%x\r\n%s\r\n" % (len(b), b),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % sum(map(len, BODY)),
            lambda b: b,
        ),
    ],
    ids=["chunked", "content-length"],
)
def test_a_framed_body_is_read_through_aiohttp(
    loop: str, head: bytes, framed: Callable[[bytes], bytes]
) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        for piece in BODY:
            writer.write(framed(piece))
            await writer.drain()
            await asyncio.sleep(0.001)
        if b"chunked" in head:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    assert collect(loop, script) == (source._Pulled, b"".join(BODY), None)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_reset_mid_body_is_an_error_not_an_end(loop: str) -> None:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(RAW_HEAD + BODY[0])
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    kind, data, error = collect(loop, script)
    assert kind is source._Socket
    assert data == BODY[0]
    assert isinstance(error, ConnectionError)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_wait_cut_short_leaves_the_body_flowing_and_closing_the_response_stops_it(
    loop: str,
) -> None:
    more = asyncio.Event()

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(RAW_HEAD + b"a" * 100)
        await writer.drain()
        await more.wait()
        writer.write(b"b" * 100)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"c" * 100)  # after the response was closed: never fed
        await writer.drain()
        await asyncio.sleep(0.2)

    async def main() -> None:
        received = bytearray()
        async with engine(script) as url, aiohttp.ClientSession() as http:
            response = await http.get(url)
            src = open_source(response, received.extend)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(src.ended(), 0.1)  # the engine is quiet: a stall check
            more.set()
            for _ in range(100):
                if len(received) == 200:
                    break
                await asyncio.sleep(0.01)
            response.close()
            assert await asyncio.wait_for(src.ended(), 5) is None
            await asyncio.sleep(0.4)
        assert bytes(received) == b"a" * 100 + b"b" * 100

    run(loop, main)
