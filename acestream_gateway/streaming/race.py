"""Awaiting one thing unless an event comes first, and leaving no task or cycle behind.

A channel waits for a claim, a pause or its session's end, each of which its stop (or its
engine's loss) must cut short at once; a result that is ready together with the event still wins,
so a claim just made always reaches its owner, to be released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The wait was cut short by the stop it watched."""


async def first(aw: Awaitable[T], *events: asyncio.Event) -> tuple[int, T | None]:
    """Run ``aw`` until it ends or one of ``events`` is set: ``(0, result)`` or ``(i, None)``
    for the ``i``-th event (1-based). A result that is ready wins over an event."""
    main = asyncio.ensure_future(aw)
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([main, *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (main, *waiters):
            task.cancel()
        await asyncio.gather(main, *waiters, return_exceptions=True)
        for task in (main, *waiters):
            let_cancellation_go(task)
    if main.done() and not main.cancelled():
        return 0, main.result()
    for index, waiter in enumerate(waiters, 1):
        if waiter.done() and not waiter.cancelled():
            return index, None
    raise asyncio.CancelledError


async def until_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T:
    """Await ``aw`` unless ``stop`` is set first (then raise :class:`Stopped`); a result that is
    ready together with the stop still wins."""
    winner, result = await first(aw, stop)
    if winner == 0:
        return result  # type: ignore[return-value]
    raise Stopped


async def pause(delay_s: float) -> None:
    """Sleep ``delay_s`` seconds; no sleep at all for none."""
    if delay_s > 0:
        await asyncio.sleep(delay_s)


def let_cancellation_go(task: asyncio.Future[Any]) -> None:
    """Take a cancelled task's error from it. The error's traceback holds the task's frames, and
    a timeout scope in them holds the task again: a cycle that only a full garbage collection
    frees, which may come minutes later, and with it everything the frames hold (a session's
    reader, the channel's broadcast window, its players' sockets)."""
    if task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            task.exception()
