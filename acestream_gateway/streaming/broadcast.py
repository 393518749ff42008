"""Fan-out of one upstream to many players through one shared window of chunks.

Every chunk is stored once; each player keeps only a cursor into the window. A slow player never
slows the others: when its cursor falls out of the window (it is ``window_bytes`` behind the live
edge) it is dropped. The window is large enough to absorb the engine's initial burst, and it only
holds what some player still has to read (plus nothing once everyone is at the live edge), so
memory follows the slowest player, not the number of players.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class PlayerTooSlow(Exception):
    """The player fell further behind the live edge than the window holds."""


class BroadcastEnded(Exception):
    """The upstream ended with an error; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Broadcast:
    """A window of published chunks with absolute sequence numbers, and its subscribers."""

    def __init__(self, window_bytes: int) -> None:
        self.window_bytes = window_bytes
        self._chunks: deque[bytes] = deque()
        self._first_seq = 0  # sequence number of self._chunks[0]
        self._held = 0  # bytes in the window
        self._published = 0  # bytes ever published
        self._subscribers: set[Subscriber] = set()
        self._closed = False
        self._error: str | None = None
        self._wakeup = asyncio.Event()
        self._last_publish = time.monotonic()
        self._join_seq: int | None = None  # the latest chunk a new player can start with

    @property
    def next_seq(self) -> int:
        return self._first_seq + len(self._chunks)

    @property
    def bytes_published(self) -> int:
        return self._published

    @property
    def held_bytes(self) -> int:
        return self._held

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, chunk: bytes, *, join_point: bool = False) -> None:
        """Append a chunk at the live edge and wake the readers; a ``join_point`` chunk starts
        cleanly (program tables, then a keyframe) and is where new players begin."""
        if self._closed or not chunk:
            return
        if join_point:
            self._join_seq = self.next_seq
        self._chunks.append(chunk)
        self._last_publish = time.monotonic()
        self._held += len(chunk)
        self._published += len(chunk)
        self._trim()
        self._wake()

    def quiet_for(self) -> float:
        """Seconds since the last chunk was published (or since the broadcast began)."""
        return time.monotonic() - self._last_publish

    def close(self, error: str | None = None) -> None:
        """No more chunks: readers drain what they have, then see the end (or the error)."""
        if not self._closed:
            self._closed = True
            self._error = error
            self._wake()

    def subscribe(self) -> Subscriber:
        """A new reader, starting at the latest join point still held (so it starts cleanly and
        at once with a keyframe), else at the live edge."""
        start = self.next_seq
        if self._join_seq is not None and self._join_seq >= self._first_seq:
            start = self._join_seq
        subscriber = Subscriber(self, start)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self._trim()

    def _read(self, subscriber: Subscriber) -> bytes | None:
        """What ``subscriber`` can read now: data, ``b""`` when it must wait, None at the end."""
        if subscriber.position < self._first_seq:
            raise PlayerTooSlow(f"{self._first_seq - subscriber.position} chunks behind")
        index = subscriber.position - self._first_seq
        if index < len(self._chunks):
            return self._take(subscriber, index)
        if self._closed:
            if self._error is not None:
                raise BroadcastEnded(self._error)
            return None
        return b""

    def _take(self, subscriber: Subscriber, index: int) -> bytes:
        # One stored chunk per read, never a joined copy: a player catching up on the burst must
        # not hold a private copy of it (memory follows the window, not the number of players).
        subscriber.position += 1
        return self._chunks[index]

    def _trim(self) -> None:
        # Drop chunks every subscriber has read and no joiner needs, and anything beyond the window.
        slowest = min((s.position for s in self._subscribers), default=self.next_seq)
        if self._join_seq is not None:
            slowest = min(slowest, self._join_seq)
        while self._chunks and (self._first_seq < slowest or self._held > self.window_bytes):
            if len(self._chunks) == 1 and self._first_seq >= slowest:
                break  # keep the live edge itself readable by whoever is on it
            self._held -= len(self._chunks.popleft())
            self._first_seq += 1

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()


class Subscriber:
    """One player's cursor into a broadcast."""

    __slots__ = ("_broadcast", "position")

    def __init__(self, broadcast: Broadcast, position: int) -> None:
        self._broadcast = broadcast
        self.position = position

    async def read(self) -> bytes | None:
        """The next data (at least one chunk), or None once the broadcast ended cleanly.

        Raises :class:`PlayerTooSlow` when this player was left behind and
        :class:`BroadcastEnded` when the upstream failed.
        """
        while True:
            data = self._broadcast._read(self)
            if data is None or data:
                return data
            await self._broadcast._wakeup.wait()

    def close(self) -> None:
        self._broadcast.unsubscribe(self)
