"""How an engine stream's bytes reach the channel: straight from its socket, or through aiohttp.

An engine answers a playback request with one endless body, without ``Content-Length`` or chunked
framing: the bytes after the headers are the stream itself. Once the headers are in, such a body
is read from the connection's socket directly: the loop hands every read to the channel in its
own callback, with no buffer, future or task wake-up in between (with many channels of a few
players each, those were most of what a channel cost the gateway). A body framed any other way is
read through aiohttp, which undoes the framing. Either way the source only delivers bytes and
says how the body ended; what the bytes mean is the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

Feed = Callable[[bytes], None]
"""Takes the next bytes of the body, in order; called in the loop, never concurrently."""

_READ_SIZE = 64 * 1024


class Source:
    """The body of one stream response, being delivered to a :data:`Feed`."""

    async def ended(self) -> BaseException | None:
        """Wait for the body to end: None when it ended cleanly, else the error that broke it.
        Cancelling the wait leaves the body flowing; waiting again goes on with it."""
        raise NotImplementedError


def open_source(response: aiohttp.ClientResponse, feed: Feed) -> Source:
    """Start delivering ``response``'s body to ``feed``; bytes that came with the headers are fed
    before this returns."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    content = response.content
    unframed = (
        response.content_length is None
        and "Transfer-Encoding" not in response.headers
        and "Content-Encoding" not in response.headers
    )
    if (
        transport is None
        or transport.is_closing()
        or not unframed
        or content.is_eof()
        or content.exception() is not None
    ):
        return _Pulled(content, feed)
    return _Socket(transport, content.read_nowait(), feed)


class _Pulled(Source):
    """Through aiohttp's body reader: any framing, at the cost of a task switch per read."""

    __slots__ = ("_content", "_feed")

    def __init__(self, content: aiohttp.StreamReader, feed: Feed) -> None:
        self._content = content
        self._feed = feed

    async def ended(self) -> BaseException | None:
        try:
            while data := await self._content.read(_READ_SIZE):
                self._feed(data)
        except aiohttp.ClientError as exc:
            return exc
        return None


class _Socket(asyncio.Protocol, Source):
    """The connection's transport, taken over from aiohttp after the headers: each read of the
    socket is fed from the loop's callback. aiohttp still owns the connection and closes it when
    the response is closed; the end of the connection ends the body."""

    def __init__(self, transport: asyncio.Transport, early: bytes, feed: Feed) -> None:
        self._feed = feed
        self._end: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        if early:
            feed(early)
        # Nothing can arrive between the bytes aiohttp buffered and the first read here: both
        # happen before this callback returns to the loop.
        transport.set_protocol(self)
        transport.resume_reading()  # aiohttp may have paused it while its buffer was full

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool:
        self._finish(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if not self._end.done():
            self._end.set_result(exc)

    async def ended(self) -> BaseException | None:
        return await asyncio.shield(self._end)
