"""HTTP written straight to the socket, where the engine does what aiohttp's server would not.

The engine's stream response has neither Content-Length nor chunked encoding (the body ends when
the connection closes), a second reader of one stream gets a malformed response, and refused
clients get a TCP reset. aiohttp would chunk the first and cannot produce the others, so the
handlers write to the transport themselves and then return `TAKEN_OVER`, which aiohttp fails to
send on the closed transport and drops quietly (aiohttp 3.8 and 3.14 alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from email.utils import formatdate

from aiohttp import web

STREAM_HEAD = (
    "HTTP/1.1 200 OK\r\n"
    "Date: {date}\r\n"
    "Content-Type: video/mp2t\r\n"
    "Connection: close\r\n"
    "Accept-Ranges: none\r\n"
    "\r\n"
)
# What a second reader gets: the stream's status line, then another status line where headers
# belong. Strict parsers (aiohttp's, both the C and the Python one) reject it.
SECOND_READER_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: video/mp2t\r\n"
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)
HIGH_WATER = 1 << 20
_DRAIN_POLL_S = 0.002
_LINGER_RESET = struct.pack("ii", 1, 0)


def taken_over() -> web.StreamResponse:
    """What a handler returns after it wrote (or closed) the response itself."""
    return web.Response()


def write_stream_head(transport: asyncio.Transport) -> None:
    write(transport, STREAM_HEAD.format(date=formatdate(usegmt=True)).encode("ascii"))


def write(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


def write_second_reader_answer(transport: asyncio.Transport) -> None:
    write(transport, SECOND_READER_HEAD)
    transport.close()


async def drain(transport: asyncio.Transport) -> None:
    """Wait while the reader lags: the socket's own backpressure, polled.

    The transport offers no event for "buffer drained" (aiohttp's protocol has one, privately).
    """
    while not transport.is_closing() and transport.get_write_buffer_size() > HIGH_WATER:  # noqa: ASYNC110
        await asyncio.sleep(_DRAIN_POLL_S)


def reset(transport: asyncio.Transport | None) -> None:
    """Drop the connection with a TCP reset (RST) instead of an orderly close."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()
