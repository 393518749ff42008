"""A Docker API a test can take away or make fail: a Unix-socket proxy before the real daemon.

Stopping the machine's dockerd would hurt everyone using it; this proxy lets one gateway lose
Docker alone. It forwards bytes both ways and never makes up an answer of its own accord.
:meth:`DockerProxy.cut` refuses new connections and closes the open ones (the event stream
included), as a daemon that goes away does; :meth:`DockerProxy.restore` listens again. It runs its
own event loop in a thread, so a test that blocks its loop (the docker CLI) never stalls the
gateway's Docker calls.

It reads each request of a kept-alive connection (``docker_faults.read_request``) so a test can
:meth:`~DockerProxy.inject` the faults a real daemon or network has into chosen calls: a slow
daemon, an answer that comes after the client gave up, a lost request, a refusal with Docker's
error body. Answers are forwarded as bytes, so the event stream and attach stay live.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .docker_faults import Action, BadRequest, Fault, Request, error_answer, read_request

T = TypeVar("T")

DOCKER_SOCKET = "/var/run/docker.sock"
_CHUNK = 65536


class DockerProxy:
    """Listens on ``path`` and forwards each connection to ``upstream``."""

    def __init__(self, path: Path, upstream: str = DOCKER_SOCKET) -> None:
        self.path = path
        self.upstream = upstream
        self.accepted = 0  # connections taken since the start, for tests to see reconnects
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()  # the test's thread adds, the proxy's loop reads
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request, in order

    @property
    def url(self) -> str:
        """The ``DOCKER_HOST`` of a client that should go through the proxy."""
        return f"unix://{self.path}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def cut(self) -> None:
        """Docker goes away: new connections are refused, open ones are closed."""
        self._run(self._cut())

    def restore(self) -> None:
        """Docker is back: the proxy listens again."""
        self._run(self._listen())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def inject(self, fault: Fault) -> Fault:
        """Apply ``fault`` to the requests it matches from now on (the first added wins)."""
        with self._faults_lock:
            self._faults.append(fault)
        return fault

    def heal(self, fault: Fault | None = None) -> None:
        """Stop injecting ``fault`` (every fault when None); held requests go on as they were."""
        with self._faults_lock:
            self._faults = [] if fault is None else [f for f in self._faults if f is not fault]

    def calls(self, method: str, path_prefix: str) -> int:
        """How many requests with ``method`` and a path starting with ``path_prefix`` came."""
        return sum(1 for m, p in list(self.seen) if m == method and p.startswith(path_prefix))

    def _fault_for(self, request: Request) -> Fault | None:
        with self._faults_lock:
            return next((f for f in self._faults if f.take(request.method, request.path)), None)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self.path.unlink(missing_ok=True)
            self._server = await asyncio.start_unix_server(self._accept, str(self.path))

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.cancel()
        await asyncio.gather(*links, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        # No socket file at all: a client's connect fails at once, as with a stopped daemon.
        self.path.unlink(missing_ok=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the instant of a cut
            writer.transport.abort()
            return
        self.accepted += 1
        link = asyncio.current_task()
        assert link is not None
        self._links.add(link)
        try:
            await self._forward(reader, writer)
        finally:
            self._links.discard(link)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer)
        with _closing(writer), _closing(up_writer):
            await asyncio.gather(self._requests(reader, up_writer, link), _answers(up_reader, link))

    async def _requests(
        self, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Forward the client's requests one by one, each as its fault (if any) says."""
        with contextlib.suppress(OSError, BadRequest, asyncio.IncompleteReadError):
            while (request := await read_request(reader)) is not None:
                self.seen.append((request.method, request.path))
                fault = self._fault_for(request)
                if fault is not None and not await _inject(fault, link, up_writer):
                    continue
                up_writer.write(request.raw)
                await up_writer.drain()
                if request.upgrades:  # the connection is a raw stream from here on
                    await _pump(reader, up_writer)
                    return
            if up_writer.can_write_eof():
                up_writer.write_eof()
            return
        link.writer.transport.abort()  # not HTTP, or broken: as a daemon would, hang up


class _Link:
    """One client connection: where made-up answers go, and until when Docker's are held."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.hold_until = 0.0  # monotonic time before which Docker's answer is not passed on


async def _inject(fault: Fault, link: _Link, up_writer: asyncio.StreamWriter) -> bool:
    """Do what ``fault`` says before the request would be forwarded; True to forward it."""
    if fault.action is Action.DELAY_REQUEST:
        await asyncio.sleep(fault.seconds)
        return True
    if fault.action is Action.DELAY_ANSWER:
        link.hold_until = time.monotonic() + fault.seconds  # before Docker can answer
        return True
    if fault.action is Action.ANSWER:
        link.writer.write(error_answer(fault.status, fault.message))
        await link.writer.drain()
    return False  # ANSWER and DROP: Docker never sees it


async def _answers(up_reader: asyncio.StreamReader, link: _Link) -> None:
    """Docker's answers as they come, each held back while a fault says so."""
    with contextlib.suppress(OSError):
        while data := await up_reader.read(_CHUNK):
            if (wait := link.hold_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            link.writer.write(data)
            await link.writer.drain()
        if link.writer.can_write_eof():
            link.writer.write_eof()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until its end, then pass the end on (HTTP may half-close)."""
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


@contextmanager
def _closing(writer: asyncio.StreamWriter) -> Iterator[None]:
    try:
        yield
    finally:
        writer.transport.abort()  # at once, as a dropped connection: no graceful close to wait on


@contextmanager
def docker_proxy(path: Path, upstream: str = DOCKER_SOCKET) -> Iterator[DockerProxy]:
    """A started proxy on ``path``, stopped when the block ends."""
    proxy = DockerProxy(path, upstream)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
