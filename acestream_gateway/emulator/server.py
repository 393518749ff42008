"""One emulated engine: the aiohttp application, its listening sockets and its background tasks.

The listening sockets are ours rather than aiohttp sites, because "refuse connections" must close
the engine port and open it again later while connections already made go on, and aiohttp 3.8's
site.stop() would shut every connection down. Use it as ``async with Emulator(options, knobs) as
emu:`` (tests, in-process) or through the command line (``python -m acestream_emulator``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

from aiohttp import web

from . import access, rawhttp
from .api import EngineApi
from .config import EngineOptions, KnobError, Knobs
from .control import CONTROL_PREFIX, ControlApi
from .playback import Playback
from .state import EngineState

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 1
SHUTDOWN_TIMEOUT_S = 2.0
SWEEP_INTERVAL_S = 0.5
_CRASH_SOON_S = 0.05
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Emulator:
    def __init__(self, options: EngineOptions | None = None, knobs: Knobs | None = None) -> None:
        self.options = options or EngineOptions()
        self.state = EngineState(knobs or Knobs())
        self.crashed = False
        self._networks = access.local_networks()
        self._app = web.Application(middlewares=[self._gate])
        EngineApi(self.state).add_routes(self._app)
        Playback(self.state).add_routes(self._app)
        ControlApi(self).add_routes(self._app)
        self._runner: web.AppRunner | None = None
        self._port = self.options.http_port
        self._control_port = self.options.control_port
        self._main: asyncio.AbstractServer | None = None
        self._control: asyncio.AbstractServer | None = None
        self._inflight: set[asyncio.Transport] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def knobs(self) -> Knobs:
        return self.state.knobs

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL for a client on this machine."""
        return f"http://{_client_host(self.options.host)}:{self._port}"

    @property
    def control_url(self) -> str:
        """Base URL of the control endpoints: the control port if there is one."""
        port = self._control_port if self._control_port is not None else self._port
        return f"http://{_client_host(self.options.host)}:{port}"

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        runner = web.AppRunner(self._app, handle_signals=False)
        await runner.setup()
        self._runner = runner
        self._main, self._port = await self._listen(self._port)
        if self._control_port is not None:
            self._control, self._control_port = await self._listen(self._control_port)
        await self._apply_refuse()
        self._spawn("idle_sweeper", self._sweep_idle())
        self._arm_crash_timer(self.knobs.crash_after_s)
        log.info(
            "engine_started port=%s control_port=%s bind_all=%s version=%s",
            self._port,
            self._control_port,
            self.options.bind_all,
            self.knobs.version,
        )

    async def close(self) -> None:
        """Stop promptly: end every session (readers get EOF), then drop the connections."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.closing.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.state.cancel_detached()
        self.state.table.close_all("shutdown")
        listeners = [s for s in (self._main, self._control) if s is not None]
        self._main = self._control = None
        for listener in listeners:
            listener.close()
        if runner.server is not None:
            await runner.server.shutdown(SHUTDOWN_TIMEOUT_S)
        await runner.cleanup()
        for listener in listeners:
            await listener.wait_closed()
        log.info("engine_stopped port=%s", self._port)

    async def update_knobs(self, changes: Mapping[str, object]) -> Knobs:
        knobs = self.knobs.updated(changes)
        self.state.knobs = knobs
        try:
            await self._apply_refuse()
        except OSError as exc:
            raise KnobError(f"refuse: cannot listen on port {self._port} again: {exc}") from exc
        if "crash_after_s" in changes:
            self._arm_crash_timer(knobs.crash_after_s)
        if changes:
            log.info("knobs_changed %s", ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        return knobs

    def crash_soon(self) -> None:
        """Crash right after the current answer has gone out."""
        self._arm_crash_timer(_CRASH_SOON_S)

    def crash(self) -> None:
        log.warning("engine_crashed port=%s", self._port)
        if self.options.crash_exits:
            os._exit(CRASH_EXIT_CODE)
        # In-process stand-in for a dead process: no listener, every connection reset.
        self.crashed = True
        for listener in (self._main, self._control):
            if listener is not None:
                listener.close()
        self._main = self._control = None
        for transport in list(self._inflight):
            rawhttp.reset(transport)
        self.state.table.close_all("crashed")

    def end_sessions(self) -> int:
        """Every broadcast dies now: readers get EOF, sessions are gone."""
        sessions = self.state.table.sessions()
        for session in sessions:
            self.state.table.end(session, "ended_by_control")
        return len(sessions)

    def stats(self) -> dict[str, object]:
        return self.state.table.snapshot(self.state.now())

    def reset_stats(self) -> None:
        self.state.table.reset_counters()

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if self.crashed:
            rawhttp.reset(transport)
            return rawhttp.taken_over()
        if not request.path.startswith(CONTROL_PREFIX):
            if not self.options.bind_all and not access.is_allowed(request.remote, self._networks):
                return web.Response(status=403, text="Access denied")
            if self.knobs.refuse == "reset":
                rawhttp.reset(transport)
                return rawhttp.taken_over()
        if transport is None:
            return await handler(request)
        self._inflight.add(transport)
        try:
            return await handler(request)
        finally:
            self._inflight.discard(transport)

    async def _listen(self, port: int) -> tuple[asyncio.AbstractServer, int]:
        assert self._runner is not None
        assert self._runner.server is not None
        family, kind, proto, _, address = socket.getaddrinfo(
            self.options.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
            server = await asyncio.get_running_loop().create_server(self._runner.server, sock=sock)
        except BaseException:
            sock.close()
            raise
        return server, sock.getsockname()[1]

    async def _apply_refuse(self) -> None:
        refusing = self.knobs.refuse == "close"
        if refusing and self._main is not None:
            self._main.close()
            self._main = None
            log.info("listener_closed port=%s", self._port)
        elif not refusing and self._main is None and not self.crashed:
            self._main, _ = await self._listen(self._port)
            log.info("listener_opened port=%s", self._port)

    def _arm_crash_timer(self, delay: float) -> None:
        old = self._tasks.pop("crash_timer", None)
        if old is not None:
            old.cancel()
        if not math.isinf(delay):
            self._spawn("crash_timer", self._crash_after(delay))

    async def _crash_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.crash()

    async def _sweep_idle(self) -> None:
        """The engine ends sessions that nobody reads."""
        table = self.state.table
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            for session in table.idle(self.state.now(), self.knobs.idle_timeout_s):
                table.end(session, "idle")
                log.info("session_ended infohash=%s reason=idle", session.infohash)

    def _spawn(self, name: str, work: Awaitable[None]) -> None:
        self._tasks[name] = asyncio.create_task(_guarded(name, work), name=f"emulator-{name}")


async def _guarded(name: str, work: Awaitable[None]) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task_failed name=%s", name)


def _client_host(host: str) -> str:
    if host in {"", "0.0.0.0"}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
