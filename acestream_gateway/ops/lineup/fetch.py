"""Reading a channel list or a guide from a local file or an http(s) URL, within bounds.

Every read has a deadline and a size limit, and gzip data (by its magic bytes, whatever the
name or the headers say) is inflated under the same limit: a hanging URL or a 50 MB playlist is
a :class:`FetchError` naming the cause, never a hung start or a process out of memory. The
bytes are handed to ``feed`` as they come, so a large guide is never held twice.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import aiohttp

Feed = Callable[[bytes], Awaitable[None]]

_CHUNK = 256 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class FetchError(Exception):
    """The list or guide could not be read; the message says why."""


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class _Limited:
    """Counts what is fed on, inflating gzip, and refuses past ``max_bytes``."""

    def __init__(self, feed: Feed, max_bytes: int) -> None:
        self._feed = feed
        self._left = max_bytes
        self._max = max_bytes
        self._inflate: zlib._Decompress | None = None
        self._started = False

    async def __call__(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            if data.startswith(_GZIP_MAGIC):
                self._inflate = zlib.decompressobj(wbits=47)
        if self._inflate is not None:
            try:
                data = self._inflate.decompress(data, self._left + 1)
            except zlib.error as exc:
                raise FetchError(f"broken gzip data: {exc}") from None
        await self._take(data)

    async def _take(self, data: bytes) -> None:
        if len(data) > self._left:
            raise FetchError(f"larger than the limit of {self._max} bytes")
        self._left -= len(data)
        if data:
            await self._feed(data)

    async def finish(self) -> None:
        if self._inflate is not None:
            if not self._inflate.eof:
                raise FetchError("gzip data ends early")
            await self._take(self._inflate.flush())


async def fetch(
    location: str,
    feed: Feed,
    *,
    http: aiohttp.ClientSession,
    max_bytes: int,
    timeout_s: float,
) -> None:
    """Hand the bytes at ``location`` (a path or an http(s) URL) to ``feed``, within
    ``timeout_s`` and ``max_bytes`` (inflated); raises :class:`FetchError`."""
    limited = _Limited(feed, max_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            if is_url(location):
                await _fetch_url(location, limited, http, max_bytes, timeout_s)
            else:
                await _read_file(Path(location), limited)
            await limited.finish()
    except TimeoutError:
        raise FetchError(f"not read within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"cannot fetch: {exc or type(exc).__name__}") from None
    except OSError as exc:
        raise FetchError(f"cannot read: {exc.strerror or exc}") from None


async def _fetch_url(
    url: str, feed: Feed, http: aiohttp.ClientSession, max_bytes: int, timeout_s: float
) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
    async with http.get(url, timeout=timeout) as response:
        if response.status != 200:
            raise FetchError(f"answered HTTP {response.status}")
        if (response.content_length or 0) > max_bytes:
            raise FetchError(f"larger than the limit of {max_bytes} bytes")
        async for chunk in response.content.iter_chunked(_CHUNK):
            await feed(chunk)


async def _read_file(path: Path, feed: Feed) -> None:
    handle: BinaryIO = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            await feed(chunk)
    finally:
        handle.close()


async def read_all(
    location: str, *, http: aiohttp.ClientSession, max_bytes: int, timeout_s: float
) -> bytes:
    """All the bytes at ``location``, within the same bounds as :func:`fetch`."""
    parts: list[bytes] = []

    async def keep(data: bytes) -> None:
        parts.append(data)

    await fetch(location, keep, http=http, max_bytes=max_bytes, timeout_s=timeout_s)
    return b"".join(parts)
