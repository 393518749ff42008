"""Faults a Docker daemon or the path to it really has, for the Docker API proxy to inject.

A :class:`Fault` matches requests by method and path (the API version prefix left out, the query
too) and does one thing to each match: hold the request before forwarding it (a slow daemon), hold
Docker's answer after Docker did the work (the client times out though the container was made),
drop the request unforwarded and never answer (the client times out and nothing was made), or
answer a status with Docker's error body ``{"message": ...}`` unforwarded (409, 500). It counts
its matches, and can apply to the first ``times`` matches only.

Also here: reading one HTTP/1.1 request off a connection (head and body, the body by
``Content-Length`` or chunked), so the proxy sees where each request of a kept-alive connection
ends, and writing the made-up answer.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from dataclasses import dataclass, field

_VERSION = re.compile(r"^/v\d+(\.\d+)?(?=/)")
_MAX_HEAD = 65536


class Action(enum.Enum):
    DELAY_REQUEST = "delay_request"  # wait, then forward
    DELAY_ANSWER = "delay_answer"  # forward at once, hold Docker's answer back
    DROP = "drop"  # never forward, never answer
    ANSWER = "answer"  # never forward, answer ``status`` with Docker's error body


@dataclass
class Fault:
    """What to do to requests matching ``method`` and ``path`` (a regular expression matched
    against the whole path without its ``/v1.xx`` prefix and query)."""

    method: str
    path: str
    action: Action
    seconds: float = 0.0
    status: int = 500
    message: str = "injected by the test"
    times: int | None = None  # apply to the first matches only; None: to every one
    matched: int = 0  # requests this fault applied to
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def take(self, method: str, path: str) -> bool:
        """Whether this fault applies to the request; counts it when it does."""
        if method.upper() != self.method.upper() or not self._pattern.fullmatch(path):
            return False
        if self.times is not None and self.matched >= self.times:
            return False
        self.matched += 1
        return True


def delay_request(method: str, path: str, seconds: float, times: int | None = None) -> Fault:
    """Docker is slow to take the request (it does the work only after ``seconds``)."""
    return Fault(method, path, Action.DELAY_REQUEST, seconds=seconds, times=times)


def delay_answer(method: str, path: str, seconds: float, times: int | None = None) -> Fault:
    """Docker does the work at once, its answer comes ``seconds`` later."""
    return Fault(method, path, Action.DELAY_ANSWER, seconds=seconds, times=times)


def drop(method: str, path: str, times: int | None = None) -> Fault:
    """The request is lost on its way: nothing done, nothing answered."""
    return Fault(method, path, Action.DROP, times=times)


def answer(method: str, path: str, status: int, message: str, times: int | None = None) -> Fault:
    """Docker refuses the call with ``status`` and ``message`` (its error body)."""
    return Fault(method, path, Action.ANSWER, status=status, message=message, times=times)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as read off the connection: its parts, and its bytes to forward as they came."""

    method: str
    path: str  # without the API version prefix and the query
    headers: dict[str, str]
    raw: bytes

    @property
    def upgrades(self) -> bool:
        """Whether the connection turns into a raw stream after this request (attach, exec)."""
        return "upgrade" in self.headers.get("connection", "").lower()


class BadRequest(Exception):
    """The bytes on the connection are not an HTTP/1.1 request."""


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on the connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("the connection closed inside a request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("a request head longer than the reader's limit") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not an HTTP/1.x request line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await _read_body(reader, headers)
    path = _VERSION.sub("", parts[1].split("?", 1)[0])
    return Request(parts[0], path, headers, head + body)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunks(reader)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    """A chunked body as it came, trailers and the final empty line included."""
    raw = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        raw += await reader.readexactly(size + 2)
    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
        raw += trailer
    raw += b"\r\n"
    return bytes(raw)


def error_answer(status: int, message: str) -> bytes:
    """Docker's answer to a refused call: its status and ``{"message": ...}`` as JSON."""
    body = json.dumps({"message": message}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} Injected\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Api-Version: 1.43\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body
