"""A Docker API the test can take away: a Unix-socket proxy in front of the real daemon.

Stopping the machine's dockerd would hurt everyone using it; this proxy lets one gateway lose
Docker alone. It forwards bytes both ways and never makes up an answer. :meth:`DockerProxy.cut`
refuses new connections and closes the open ones (the event stream included), as a daemon that
goes away does; :meth:`DockerProxy.restore` listens again. It runs its own event loop in a thread,
so a test that blocks its loop (the docker CLI) never stalls the gateway's Docker calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

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
        with _closing(writer), _closing(up_writer):
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


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
