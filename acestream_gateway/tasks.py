"""One small task supervisor, so that every background task has a name, an owner and a guard.

The registry, the reconciler, the health prober, the Docker event follower and the app each own one
:class:`Supervisor`. A task started through it is named, its failure is logged with that name (a
crash is never silent), a long-lived loop is restarted with backoff when it crashes, and
:meth:`Supervisor.close` cancels and awaits everything it still runs. Nothing is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# 2.0**n overflows past this; a loop may well fail that often (the reconciler while Docker is gone
# for a night), and by then any delay has long reached its cap.
_MAX_EXPONENT = 1023


class Backoff:
    """Delays that double after each failure up to a cap, and start over after a success."""

    def __init__(self, first_s: float = 1.0, cap_s: float = 60.0) -> None:
        self.first_s, self.cap_s = first_s, cap_s
        self.failures = 0

    def peek(self) -> float:
        """The delay the next failure would get, without counting one."""
        return float(min(self.cap_s, self.first_s * 2.0 ** min(self.failures, _MAX_EXPONENT)))

    def next(self) -> float:
        delay = self.peek()
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Supervisor:
    """The owner of a set of named tasks; see the module docstring."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._closing = False

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks.values())

    def spawn(
        self, coro: Coroutine[Any, Any, T], *, name: str, fresh_context: bool = True
    ) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name``; a failure is logged, the result is the caller's.

        ``fresh_context``: the task logs in a context of its own, not its starter's (a channel
        outlives the request that opened it).
        """
        if self._closing:
            coro.close()
            raise RuntimeError(f"{self.owner} is closing: cannot start {name}")
        context = contextvars.Context() if fresh_context else None
        task = asyncio.create_task(coro, name=name, context=context)
        self._tasks[task] = name
        task.add_done_callback(self._done)
        return task

    def spawn_loop(
        self,
        body: Callable[[], Awaitable[None]],
        *,
        name: str,
        backoff: Backoff | None = None,
    ) -> asyncio.Task[None]:
        """Run a long-lived loop; when it crashes it is logged and restarted after a backoff."""
        return self.spawn(self._guarded(body, name, backoff or Backoff()), name=name)

    async def wait(self) -> None:
        """Return once every task has ended on its own (including any started meanwhile)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        """Cancel every task still running and wait until all have ended."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guarded(
        self, body: Callable[[], Awaitable[None]], name: str, backoff: Backoff
    ) -> None:
        while True:
            try:
                await body()
            except Exception:  # the guard of a long-lived loop: log, back off, start it again
                delay = backoff.next()
                log.exception("task_crashed", task=name, owner=self.owner, restart_in_s=delay)
                await asyncio.sleep(delay)
            else:
                return

    def _done(self, task: asyncio.Task[Any]) -> None:
        name = self._tasks.pop(task, task.get_name())
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task_failed", task=name, owner=self.owner, exc_info=exc)
