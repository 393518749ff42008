"""What the handlers share: the current knobs, the session table, and the process's shutdown.

Waits in handlers (slow answers, prebuffering, a hanging stop) go through `pause`/`wait_ended`, so a
shutdown or a session's end interrupts them and the server can stop promptly.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from .config import Knobs
from .sessions import Session, SessionTable

_HOST = re.compile(r"^([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")


class EngineState:
    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.table = SessionTable()
        self.closing = asyncio.Event()
        self._work: set[asyncio.Task[Any]] = set()

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    @staticmethod
    def wall() -> float:
        return time.time()

    def detach(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work that must finish even if the caller hangs up (aiohttp 3.8 cancels handlers).

        The tasks are ours: `cancel_detached` ends those still running at shutdown.
        """
        task = asyncio.create_task(work, name="emulator-detached")
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    async def cancel_detached(self) -> None:
        tasks = list(self._work)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def pause(self, seconds: float) -> bool:
        """Sleep `seconds` (may be infinite); False if the server started shutting down."""
        return not await wait_event(self.closing, seconds)

    async def wait_ended(self, session: Session, seconds: float) -> bool:
        """Wait up to `seconds` for the session to end; True if it did."""
        return await wait_event(session.ended, seconds)


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` up to `seconds` (infinite allowed); True if it is set."""
    if event.is_set() or seconds <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), None if math.isinf(seconds) else seconds)
    except TimeoutError:
        return False
    return True


def base_url(request: web.BaseRequest) -> str:
    """scheme://host[:port] as the caller addressed the engine (its Host header)."""
    host = request.headers.get("Host", "")
    if _HOST.match(host):
        return f"http://{host}"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        address = f"[{sockname[0]}]" if ":" in str(sockname[0]) else str(sockname[0])
        return f"http://{address}:{sockname[1]}"
    return "http://127.0.0.1:6878"
