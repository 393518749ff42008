"""Who watches a channel through HLS: clients seen within the idle window.

An HLS player holds no connection open; it fetches the playlist and segments every few seconds.
It counts as a player while it was seen within ``idle_s``, and the channel is held that long
after the last fetch (then it lingers like any channel).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator


class Viewers:
    """Clients (an address, or a player token) by when they last fetched, and the hold they
    put on the channel."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._last = clock()  # made for a request: held from now
        self._waiting = 0  # playlist requests waiting for the channel's first segment

    def touch(self, client: str) -> None:
        now = self._clock()
        self._last = now
        self._seen.pop(client, None)
        self._seen[client] = now  # re-inserted last: the oldest sightings come first
        self._forget(now)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Hold the channel for as long as a playlist request waits for its first segment (a
        slow engine may take longer to start than the idle window)."""
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            self._last = self._clock()

    @property
    def until(self) -> float:
        """When (monotonic seconds) the channel stops being held for HLS, if nobody fetches."""
        return math.inf if self._waiting else self._last + self.idle_s

    def count(self) -> int:
        """Clients seen within the idle window."""
        self._forget(self._clock())
        return len(self._seen)

    def _forget(self, now: float) -> None:
        while self._seen:
            client, at = next(iter(self._seen.items()))
            if now - at < self.idle_s:
                break
            del self._seen[client]
