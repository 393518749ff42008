"""Handing the memory an ended channel used back to the system.

A channel's bytes pass through many short-lived buffers (socket reads, blocks, the window), which
the C allocator serves from its heap. When the channel ends they are freed, but glibc's malloc
keeps freed pages mapped unless they sit at the very top of its heap. Under channel churn (three
channels of ten players, a channel replaced every few seconds) the gateway's resident memory
grew at each replacement and did not level off, while everything in use stayed flat: the Python
heap (tracemalloc), the count of objects, pymalloc's arenas and malloc's bytes in use. The growth
was free memory held by malloc. ``malloc_trim(0)`` returns the free pages of every arena to the
kernel; it is asked for once a channel has ended, at most once per ``min_interval_s`` (it walks
the heap on the loop: 0.1-0.4 ms for the soak's gateway, logged as ``heap_trimmed`` at debug
level), and always after the last channel that ended. Where the C library has no
``malloc_trim`` (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import time
from collections.abc import Callable

from ..logs import get_logger

log = get_logger(__name__)


def malloc_trim() -> Callable[[], None] | None:
    """The C library's ``malloc_trim(0)``, or None when it has none."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)  # 0: keep no padding at the top of the heap

    return run


class HeapTrimmer:
    """Trims the C heap soon after it is asked to, and never more often than the interval."""

    def __init__(
        self,
        min_interval_s: float = 1.0,
        trim: Callable[[], None] | None = None,
    ) -> None:
        self._trim = trim if trim is not None else malloc_trim()
        self._interval_s = min_interval_s
        self._last = -math.inf
        self._pending: asyncio.TimerHandle | None = None
        self.trims = 0

    def request(self) -> None:
        """Trim now if the last trim is old enough, else once it is (one trim for all asks in
        between)."""
        if self._trim is None or self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last + self._interval_s - loop.time())
        self._pending = loop.call_later(delay, self._run, loop)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._pending = None
        self._last = loop.time()
        assert self._trim is not None
        started = time.perf_counter()
        self._trim()
        self.trims += 1
        log.debug("heap_trimmed", took_ms=round((time.perf_counter() - started) * 1000, 2))
