"""Fan-out of one upstream to many players through one shared window of chunks.

Every chunk is stored once and handed to every player as the same immutable object; each player
keeps only a cursor into the window. Players take the window in one of two ways:

- **following** (the common case): a player at the live edge whose socket has room registers a
  *push* callable, and :meth:`Broadcast.publish` hands each new chunk to every follower in one
  pass, with no task switch per player per chunk. A push that refuses a chunk (the player's
  socket is backed up, or it is gone) takes the player out of that pass: it wakes to catch up.
- **reading**: a player behind the live edge (a joiner starting at a join point, one catching up
  after its socket filled) reads chunks one by one with :meth:`Subscriber.read` at its own pace.

A slow player never slows the others: when its cursor falls out of the window (it is
``window_bytes`` behind the live edge) it is dropped. The window is large enough to absorb the
engine's initial burst, and it only holds what some player still has to read (plus the latest
join point), so memory follows the slowest player, not the number of players.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .chunks import ChunkWindow
from .mpegts import NULL_PACKET

Push = Callable[[bytes], bool]
"""Hands one chunk to a following player at once: True if it took it, False if it cannot take it
now (its socket is backed up, or it left). It never raises and never waits."""

Tap = Callable[[bytes, object], None]
"""Sees every chunk published, with the engine session it came from (None for keep-alive
packets); it never raises and never waits (the channel's HLS segmenter is one)."""


class PlayerTooSlow(Exception):
    """The player fell further behind the live edge than the window holds."""


class BroadcastEnded(Exception):
    """The upstream ended with an error; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Broadcast:
    """A window of published chunks (:mod:`.chunks`), and its subscribers."""

    def __init__(self, window_bytes: int) -> None:
        self.window_bytes = window_bytes
        self._window = ChunkWindow(window_bytes)
        self._readers: set[Subscriber] = set()  # subscribers that read at their own pace
        self._awaiting: set[Subscriber] = set()  # clean subscribers before the first join point
        self._followers: dict[Subscriber, Push] = {}  # at the live edge, fed by publish()
        self._closed = False
        self._error: str | None = None
        self._wakeup = asyncio.Event()
        self._last_publish = time.monotonic()
        self._taps: list[Tap] = []
        self._session: object = None  # the engine session of the latest chunk that had one

    @property
    def next_seq(self) -> int:
        return self._window.next_seq

    @property
    def bytes_published(self) -> int:
        return self._window.published

    @property
    def held_bytes(self) -> int:
        return self._window.held

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._readers) + len(self._followers)

    @property
    def follower_count(self) -> int:
        """Subscribers fed by :meth:`publish` itself (at the live edge, socket not backed up)."""
        return len(self._followers)

    def tap(self, tap: Tap) -> None:
        """Hand every chunk published from now on to ``tap``, for the broadcast's life."""
        self._taps.append(tap)

    def untap(self, tap: Tap) -> None:
        """Stop handing chunks to ``tap`` (never called from a tap itself)."""
        if tap in self._taps:
            self._taps.remove(tap)

    def since_join(self) -> tuple[object, list[bytes]]:
        """What a consumer made now can start from at once: the chunks from the latest join
        point that are still held (the first cut there), and the engine session they are of (a
        splice is a join point: none of them is of an older session)."""
        return self._session, self._window.since_join()

    def publish(self, chunk: bytes, *, join_at: int | None = None, session: object = None) -> None:
        """Append a chunk at the live edge, hand it to every follower and wake the readers;
        ``join_at`` is where in the chunk the stream starts cleanly (program tables, then a
        keyframe): new players begin there. ``session`` tells the engine sessions apart (a
        failover starts another), None for what no session sent."""
        if self._closed or not chunk:
            return
        seq = self._window.append(chunk, join_at)
        if join_at is not None and self._awaiting:
            self._start_awaiting(seq, join_at)
        self._last_publish = time.monotonic()
        if self._followers:
            self._push(chunk, seq)
        if session is not None:
            self._session = session
        for tap in self._taps:
            tap(chunk, session)
        self._trim()
        self._wake()

    def _push(self, chunk: bytes, seq: int) -> None:
        refused: list[Subscriber] | None = None
        for subscriber, push in self._followers.items():
            if not push(chunk):
                if refused is None:
                    refused = []
                refused.append(subscriber)
        if refused is not None:
            for subscriber in refused:
                self._stop_following(subscriber, seq)  # it reads ``chunk`` itself, when it can

    def quiet_for(self) -> float:
        """Seconds since the last chunk was published (or since the broadcast began)."""
        return time.monotonic() - self._last_publish

    def close(self, error: str | None = None) -> None:
        """No more chunks: readers drain what they have, then see the end (or the error)."""
        if not self._closed:
            self._closed = True
            self._error = error
            for subscriber in list(self._followers):
                self._stop_following(subscriber, self.next_seq)
            self._wake()

    def subscribe(self, *, clean: bool = False) -> Subscriber:
        """A new reader, starting at the latest join point still held (so it starts cleanly and
        at once with a keyframe), else at the live edge. ``clean``: with no join point held, it
        waits for the first one published and gets only keep-alive packets until then (a player
        that moves here from another stream must not see this one begin between two keyframes)."""
        subscriber = Subscriber(self, self.next_seq)
        join = self._window.held_join()
        if join is not None:
            subscriber.position, subscriber.skip = join
        elif clean:
            subscriber.awaiting = True
            self._awaiting.add(subscriber)
        self._readers.add(subscriber)
        return subscriber

    def _start_awaiting(self, seq: int, join_at: int) -> None:
        for subscriber in self._awaiting:
            subscriber.position, subscriber.skip, subscriber.awaiting = seq, join_at, False
        self._awaiting.clear()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if self._followers.pop(subscriber, None) is not None:
            subscriber._release()
        self._readers.discard(subscriber)
        self._awaiting.discard(subscriber)
        self._trim()

    def _follow(self, subscriber: Subscriber, push: Push) -> bool:
        """Feed ``subscriber`` from :meth:`publish` from now on, if it is at the live edge."""
        if self._closed or subscriber.awaiting or subscriber.position != self.next_seq:
            return False
        if subscriber in self._readers:
            self._readers.discard(subscriber)
            self._followers[subscriber] = push
            self._trim()  # a follower holds nothing back: chunks it has are no longer needed
            return True
        return False

    def _stop_following(self, subscriber: Subscriber, position: int) -> None:
        if self._followers.pop(subscriber, None) is None:
            return
        subscriber.position = position
        self._readers.add(subscriber)
        subscriber._release()

    def _read(self, subscriber: Subscriber) -> bytes | None:
        """What ``subscriber`` can read now: data, ``b""`` when it must wait, None at the end."""
        window = self._window
        if subscriber.position < window.first_seq:
            raise PlayerTooSlow(f"{window.first_seq - subscriber.position} chunks behind")
        chunks = window.chunks
        index = subscriber.position - window.first_seq
        while subscriber.awaiting and index < len(chunks):
            subscriber.position += 1  # before its first join point: keep-alive packets only
            if chunks[index] == NULL_PACKET:
                return NULL_PACKET
            index += 1
        if index < len(chunks):
            return _take(subscriber, chunks[index])
        if self._closed:
            if self._error is not None:
                raise BroadcastEnded(self._error)
            return None
        return b""

    def _trim(self) -> None:
        # Followers are at the live edge: they need nothing the window holds.
        self._window.trim(min((s.position for s in self._readers), default=self.next_seq))

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()


class Subscriber:
    """One player's cursor into a broadcast."""

    __slots__ = ("_broadcast", "_following", "awaiting", "position", "skip")

    def __init__(self, broadcast: Broadcast, position: int) -> None:
        self._broadcast = broadcast
        self._following: asyncio.Future[None] | None = None
        self.position = position  # the next chunk to read
        self.skip = 0  # bytes of that chunk before the player's join point
        self.awaiting = False  # a clean subscriber before the broadcast's first join point

    def take(self) -> bytes | None:
        """The next chunk at once: data, ``b""`` at the live edge, None once the broadcast ended
        cleanly (raises like :meth:`read`)."""
        return self._broadcast._read(self)

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

    async def follow(self, push: Push) -> None:
        """Have every chunk published from now on handed to ``push``, until it refuses one or the
        broadcast ends; then return, and :meth:`take` goes on from the refused chunk. Returns at
        once when this subscriber is not at the live edge (it has chunks to read first)."""
        if not self._broadcast._follow(self, push):
            if self.awaiting and not self._broadcast.closed:
                await self._broadcast._wakeup.wait()  # nothing to take before the next chunk
            return
        self._following = asyncio.get_running_loop().create_future()
        try:
            await self._following
        finally:
            self._following = None
            self._broadcast._stop_following(self, self._broadcast.next_seq)  # if cancelled

    def _release(self) -> None:
        if self._following is not None and not self._following.done():
            self._following.set_result(None)

    def close(self) -> None:
        self._broadcast.unsubscribe(self)


def _take(subscriber: Subscriber, chunk: bytes) -> bytes:
    # One stored chunk per read, never a joined copy: a player catching up on the burst must
    # not hold a private copy of it (memory follows the window, not the number of players).
    # Only a new player's first chunk is cut, to start at its join point.
    subscriber.position += 1
    if subscriber.skip:
        chunk, subscriber.skip = chunk[subscriber.skip :], 0
    return chunk
