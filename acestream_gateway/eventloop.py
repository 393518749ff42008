"""The event loop the gateway runs on: uvloop where it is installed, else asyncio's own.

Most of what a fan-out does is hand blocks to sockets; uvloop's transports do that in C (and
coalesce a transport's pending writes into one system call), where asyncio's selector transports
run Python for every write. asyncio's loop stays a working fallback (``EVENT_LOOP=asyncio``, or
a platform without uvloop).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Literal

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopUnavailable(RuntimeError):
    """``EVENT_LOOP=uvloop`` was asked for on a system without uvloop."""


def loop_factory(choice: EventLoopChoice) -> tuple[str, LoopFactory]:
    """The loop's name and how to make one, for ``EVENT_LOOP=choice``."""
    if choice == "asyncio":
        return "asyncio", asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise EventLoopUnavailable("EVENT_LOOP=uvloop, but uvloop is not installed") from None
        return "asyncio", asyncio.new_event_loop
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory
