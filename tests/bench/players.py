"""The load generator: many media players reading one stream at full speed, in their own process.

A player here is a plain asyncio protocol that sends one GET and counts what comes back: no HTTP
client library, so the reading side costs little and keeps up with N x bitrate on one core. The
benchmark driver talks to this process over stdin/stdout, one JSON object per line:

- ``{"cmd": "open", "port": P, "path": "/...", "count": N}``: N players join, answer once every
  one has its response headers (or failed);
- ``{"cmd": "counts"}``: body bytes received so far by each player, and which ones were closed;
- ``{"cmd": "joins", "port": P, "path": "/...", "count": K, "gap_s": G}``: K players join one
  after another, each timed to its first body bytes, then leaves;
- ``{"cmd": "close"}``: every player leaves; ``{"cmd": "quit"}``: the process ends.

    python -m tests.bench.players
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

HOST = "127.0.0.1"
_HEAD_LIMIT = 64 * 1024
_KEEP_BYTES = 4096
_CONNECT_BATCH = 50
_HEADERS_TIMEOUT_S = 20.0


class Reader(asyncio.Protocol):
    """One player: sends its request, parses the status line, counts body bytes."""

    def __init__(self, request: bytes, keep: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.started = time.monotonic()
        self.headers_at: float | None = None
        self.first_body_at: float | None = None
        self.status = 0
        self.chunked = False
        self.body = 0
        self.kept = bytearray()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.headers = loop.create_future()  # done when the head is parsed or the link is gone
        self.enough = loop.create_future()  # done when ``keep`` body bytes arrived (or gone)
        self._keep = keep
        self._head = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.headers_at is None:
            data = self._head_part(data)
            if not data:
                return
        if self.first_body_at is None:
            self.first_body_at = time.monotonic()
        self.body += len(data)
        if len(self.kept) < self._keep:
            self.kept += data[: self._keep - len(self.kept)]
            if len(self.kept) >= self._keep:
                _resolve(self.enough)

    def _head_part(self, data: bytes) -> bytes:
        """Consume response headers; what is left of ``data`` is body."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _HEAD_LIMIT and self.transport is not None:
                self.transport.close()
            return b""
        head = bytes(self._head[:end]).decode("latin-1").lower()
        rest = bytes(self._head[end + 4 :])
        self._head.clear()
        self.headers_at = time.monotonic()
        parts = head.split(None, 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        self.chunked = "transfer-encoding: chunked" in head
        _resolve(self.headers)
        return rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        _resolve(self.headers)
        _resolve(self.enough)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def request_bytes(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: bench-player\r\n"
        "Accept: */*\r\n\r\n"
    ).encode("ascii")


def dechunk(raw: bytes) -> bytes:
    """The payload at the start of a chunked body (as much as ``raw`` holds whole)."""
    out, pos = bytearray(), 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out)
        size = int(raw[pos:eol].split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(out)
        out += raw[eol + 2 : eol + 2 + size]
        if eol + 2 + size + 2 > len(raw):
            return bytes(out)
        pos = eol + 2 + size + 2


async def connect(port: int, path: str, keep: int = 0) -> Reader:
    loop = asyncio.get_running_loop()
    request = request_bytes(port, path)
    _, reader = await loop.create_connection(lambda: Reader(request, keep), HOST, port)
    return reader


class LoadGenerator:
    """The players of one phase, and the commands the driver sends."""

    def __init__(self) -> None:
        self.readers: list[Reader] = []

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "open":
            return await self.open(
                int(command["port"]), str(command["path"]), int(command["count"])
            )
        if name == "counts":
            return self.counts()
        if name == "joins":
            return await self.joins(
                int(command["port"]),
                str(command["path"]),
                int(command["count"]),
                float(command["gap_s"]),
            )
        if name == "close":
            return await self.close()
        return {"error": f"unknown command {name!r}"}

    async def open(self, port: int, path: str, count: int) -> dict[str, Any]:
        errors: list[str] = []
        for start in range(0, count, _CONNECT_BATCH):
            batch = min(_CONNECT_BATCH, count - start)
            results = await asyncio.gather(
                *(connect(port, path) for _ in range(batch)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, Reader):
                    self.readers.append(result)
                else:
                    errors.append(repr(result))
        pending = [r.headers for r in self.readers if not r.headers.done()]
        if pending:
            await asyncio.wait(pending, timeout=_HEADERS_TIMEOUT_S)
        statuses: dict[str, int] = {}
        for reader in self.readers:
            key = str(reader.status) if reader.headers_at is not None else "no headers"
            statuses[key] = statuses.get(key, 0) + 1
        return {"opened": len(self.readers), "errors": errors[:5], "statuses": statuses}

    def counts(self) -> dict[str, Any]:
        return {
            "at": time.monotonic(),
            "bytes": [r.body for r in self.readers],
            "closed": [i for i, r in enumerate(self.readers) if r.closed],
        }

    async def joins(self, port: int, path: str, count: int, gap_s: float) -> dict[str, Any]:
        results = []
        for _ in range(count):
            await asyncio.sleep(gap_s)  # spread the joins over the stream's 100 ms blocks
            results.append(await self.join(port, path))
        return {"joins": results}

    async def join(self, port: int, path: str) -> dict[str, Any]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(10):
                reader = await connect(port, path, keep=_KEEP_BYTES)
                await reader.enough
        except (OSError, TimeoutError) as exc:
            return {"error": repr(exc)}
        reader.close()
        payload = dechunk(bytes(reader.kept)) if reader.chunked else bytes(reader.kept)
        return {
            "status": reader.status,
            "headers_s": _since(started, reader.headers_at),
            "first_byte_s": _since(started, reader.first_body_at),
            "first_packet": describe_packet(payload[:188]),
        }

    async def close(self) -> dict[str, Any]:
        for reader in self.readers:
            reader.close()
        await asyncio.sleep(0.2)
        closed, self.readers = len(self.readers), []
        return {"closed": closed}


def _since(started: float, at: float | None) -> float | None:
    return None if at is None else at - started


def describe_packet(packet: bytes) -> dict[str, Any]:
    """Whether a join starts on a TS packet, and with which PID (0 is the PAT)."""
    if len(packet) < 4 or packet[0] != 0x47:
        return {"sync": False, "pid": None}
    return {"sync": True, "pid": (packet[1] & 0x1F) << 8 | packet[2]}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    generator = LoadGenerator()
    while line := await stdin.readline():
        command = json.loads(line)
        if command.get("cmd") == "quit":
            break
        answer = await generator.handle(command)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    await generator.close()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
