"""A media player for the failover phase: it reads one channel and, when asked to watch from a
moment on, notes when the first TS packet that is not keep-alive arrives after it, and its PID.

It counts TS packets as they come (the gateway sends whole packets), so a resumption that does not
land on a packet boundary shows as a missing sync byte.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from acestream_gateway.streaming.mpegts import NULL_PID, PACKET_SIZE, SYNC_BYTE

_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)


@dataclass(frozen=True, slots=True)
class Resumption:
    """The first packet with data after the watched moment."""

    at: float  # time.monotonic() when its chunk arrived
    pid: int
    sync: bool  # it started where a packet should start
    keepalive_packets: int  # null packets received between the moment and it


class _Watch:
    def __init__(self, since: float) -> None:
        self.since = since
        self.keepalive = 0
        self.result: asyncio.Future[Resumption | None] = asyncio.get_running_loop().create_future()


class Player:
    """One player on one channel URL, reading until :meth:`close`."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.status = 0
        self.bytes = 0
        self.error: str | None = None
        self.ended = asyncio.Event()
        self._partial = b""
        self._watch: _Watch | None = None
        self._task = asyncio.create_task(self._read(), name=name)

    def watch(self, since: float) -> asyncio.Future[Resumption | None]:
        """Resolves with the first data packet that arrives after ``since`` (None if the stream
        ends first)."""
        self._resolve(None)
        watch = self._watch = _Watch(since)
        if self.ended.is_set():
            self._resolve(None)
        return watch.result

    async def receives(self, size: int, timeout_s: float) -> bool:
        """Whether ``size`` more bytes arrive within ``timeout_s``."""
        target = self.bytes + size
        deadline = time.monotonic() + timeout_s
        while self.bytes < target and not self.ended.is_set():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return self.bytes >= target

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as http,
                http.get(self.url) as resp,
            ):
                self.status = resp.status
                if resp.status != 200:
                    self.error = f"status {resp.status}"
                    return
                async for chunk in resp.content.iter_any():
                    self._feed(time.monotonic(), chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.error = repr(exc)
        finally:
            self.ended.set()
            self._resolve(None)

    def _feed(self, at: float, chunk: bytes) -> None:
        self.bytes += len(chunk)
        data = self._partial + chunk
        whole = len(data) - len(data) % PACKET_SIZE
        watch = self._watch
        if watch is not None and at > watch.since:
            self._scan(watch, at, data, whole)
        self._partial = data[whole:]

    def _scan(self, watch: _Watch, at: float, data: bytes, whole: int) -> None:
        for start in range(0, whole, PACKET_SIZE):
            pid = (data[start + 1] & 0x1F) << 8 | data[start + 2]
            if pid == NULL_PID and data[start] == SYNC_BYTE:
                watch.keepalive += 1
                continue
            self._resolve(Resumption(at, pid, data[start] == SYNC_BYTE, watch.keepalive))
            return

    def _resolve(self, value: Resumption | None) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and not watch.result.done():
            watch.result.set_result(value)
