"""The load generator: many media players reading one stream at full speed, in their own process.

A player here is a plain asyncio protocol that sends one GET and counts what comes back: no HTTP
client library, so the reading side costs little and keeps up with N x bitrate on one core. The
benchmark driver talks to this process over stdin/stdout, one JSON object per line:

- ``{"cmd": "open", "port": P, "path": "/...", "count": N}``: N players join, answer once every
  one has its response headers (or failed); with ``"stalled": K`` K more join that never read a
  byte; with ``"at_once": true`` all connect at the same instant (no batches) and the answer
  waits until each has 64 KiB of body (or ``wait_s`` passed), giving each one's time to it;
- ``{"cmd": "counts"}``: body bytes received so far by each player, which ones were closed, the
  longest wait between two receptions of each since the last counts, and which stalled players
  were disconnected;
- ``{"cmd": "joins", "port": P, "path": "/...", "count": K, "gap_s": G}``: K players join one
  after another, each timed to its first body bytes, then leaves;
- ``{"cmd": "close"}``: every player leaves; ``{"cmd": "quit"}``: the process ends.

    python -m tests.bench.players
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

PACKET_SIZE = 188
SYNC_BYTE = 0x47

HOST = "127.0.0.1"
_HEAD_LIMIT = 64 * 1024
_KEEP_BYTES = 4096
_CONNECT_BATCH = 50
_HEADERS_TIMEOUT_S = 20.0
_DATA_BYTES = 64 * 1024  # more than keep-alive packets: the stream itself is flowing
_STALLED_RCVBUF = 4096
_TCP_ESTABLISHED = 1


class Stalled(asyncio.Protocol):
    """A player that sends its request and then never reads a byte (its socket fills)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    @property
    def dropped(self) -> bool:
        """Whether the server closed the connection: with reading paused the loop never looks,
        so ask the kernel for the TCP state (the first byte of ``TCP_INFO``; 1 is established)."""
        if self.closed or self.transport is None:
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return True
        info: bytes = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return info[0] != _TCP_ESTABLISHED

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


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
        self.out_of_sync = 0  # packets, since the first body byte, without their sync byte
        self.kept = bytearray()
        self.closed = False
        self.last_at = self.started
        self.max_gap = 0.0  # the longest wait between two receptions since the last reset
        self.data_at: float | None = None  # when the body reached _DATA_BYTES
        self.transport: asyncio.Transport | None = None
        self.headers = loop.create_future()  # done when the head is parsed or the link is gone
        self.enough = loop.create_future()  # done when ``keep`` body bytes arrived (or gone)
        self.has_data = loop.create_future()  # done when _DATA_BYTES arrived (or gone)
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
        now = time.monotonic()
        if self.first_body_at is None:
            self.first_body_at = now
        elif now - self.last_at > self.max_gap:
            self.max_gap = now - self.last_at
        self.last_at = now
        # Valid TS: a sync byte every 188 bytes from the body's first byte on (one stride slice).
        starts = data[-self.body % PACKET_SIZE :: PACKET_SIZE]
        self.out_of_sync += len(starts) - starts.count(SYNC_BYTE)
        self.body += len(data)
        if self.data_at is None and self.body >= _DATA_BYTES:
            self.data_at = now
            _resolve(self.has_data)
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
        _resolve(self.has_data)

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


async def connect_stalled(port: int, path: str) -> Stalled:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _STALLED_RCVBUF)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    _, stalled = await loop.create_connection(lambda: Stalled(request_bytes(port, path)), sock=sock)
    return stalled


class LoadGenerator:
    """The players of one phase, and the commands the driver sends."""

    def __init__(self) -> None:
        self.readers: list[Reader] = []
        self.stalled: list[Stalled] = []

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "open":
            port, path, count = int(command["port"]), str(command["path"]), int(command["count"])
            if command.get("at_once"):
                return await self.open_at_once(port, path, count, float(command["wait_s"]))
            answer = await self.open(port, path, count)
            for _ in range(int(command.get("stalled", 0))):
                self.stalled.append(await connect_stalled(port, path))
            return answer
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

    async def open_at_once(self, port: int, path: str, count: int, wait_s: float) -> dict[str, Any]:
        """``count`` players at the same instant; each one's seconds to its first 64 KiB."""
        started = time.monotonic()
        results = await asyncio.gather(
            *(connect(port, path) for _ in range(count)), return_exceptions=True
        )
        readers = [r for r in results if isinstance(r, Reader)]
        self.readers += readers
        if readers:
            await asyncio.wait([r.has_data for r in readers], timeout=wait_s)
        return {
            "opened": len(readers),
            "errors": [repr(r) for r in results if not isinstance(r, Reader)][:5],
            "data_s": [_since(started, r.data_at) for r in readers],
            "headers_s": [_since(started, r.headers_at) for r in readers],
        }

    def counts(self) -> dict[str, Any]:
        gaps = [r.max_gap for r in self.readers]
        for reader in self.readers:
            reader.max_gap = 0.0
        return {
            "at": time.monotonic(),
            "bytes": [r.body for r in self.readers],
            "out_of_sync": [r.out_of_sync for r in self.readers],
            "closed": [i for i, r in enumerate(self.readers) if r.closed],
            "max_gap_s": gaps,
            "stalled": len(self.stalled),
            "stalled_closed": sum(1 for s in self.stalled if s.dropped),
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
        for stalled in self.stalled:
            stalled.close()
        await asyncio.sleep(0.2)
        closed, self.readers, self.stalled = len(self.readers), [], []
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
