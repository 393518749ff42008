"""A channel outlives its last player a few seconds (``STREAM_LINGER_S``), so fast zapping
between channels does not thrash engines: one timer per channel nobody plays, cancelled when a
player comes back, and at its end the channel is let go.

HLS players hold a channel for their idle window after each fetch; the linger counts from when
the last player left or that hold ran out, whichever is later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping

from ..logs import get_logger
from ..tasks import Supervisor
from .channel import Channel

log = get_logger(__name__)

_HLS_RECHECK_S = 1.0  # how often a lingering channel held by HLS looks at its hold again


class Lingers(Mapping[Channel, "asyncio.Task[None]"]):
    """The linger timers, by channel (a read-only mapping); their tasks are ``tasks``'."""

    def __init__(self, tasks: Supervisor, linger_s: float, idle: Callable[[Channel], None]) -> None:
        self._tasks = tasks
        self._linger_s = linger_s
        self._idle = idle  # told of a channel whose linger ran out with nobody back
        self._timers: dict[Channel, asyncio.Task[None]] = {}

    def __getitem__(self, channel: Channel) -> asyncio.Task[None]:
        return self._timers[channel]

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._timers)

    def __len__(self) -> int:
        return len(self._timers)

    def start(self, channel: Channel) -> None:
        """Start ``channel``'s timer, unless it has one."""
        if channel not in self._timers:
            task = self._tasks.spawn(self._linger(channel), name=f"linger {channel.content.key}")
            self._timers[channel] = task
            task.add_done_callback(lambda t: self._done(channel, t))

    def cancel(self, channel: Channel) -> None:
        """A player came back: no timer for ``channel``."""
        task = self._timers.pop(channel, None)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        for task in list(self._timers.values()):
            task.cancel()

    def _done(self, channel: Channel, task: asyncio.Task[None]) -> None:
        # Only forget this timer: a cancelled one may finish after its successor started.
        if self._timers.get(channel) is task:
            del self._timers[channel]

    async def _linger(self, channel: Channel) -> None:
        left_at = time.monotonic()
        while True:
            wait = max(left_at, channel.hls_held_until) + self._linger_s - time.monotonic()
            if wait <= 0:
                break
            await asyncio.sleep(min(wait, _HLS_RECHECK_S))
        if channel.players == 0:
            log.info("channel_idle", content=channel.content.key, linger_s=self._linger_s)
            self._idle(channel)
