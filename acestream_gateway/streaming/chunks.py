"""The chunks a broadcast holds: each published chunk once, numbered in sequence, kept while a
reader still has to read it or a new player may start from it (the latest join point), and never
more than ``window_bytes`` of them. What readers there are, and where they stand, is the
broadcast's (:mod:`.broadcast`); this is only the store and its bound."""

from __future__ import annotations

import itertools
from collections import deque


class ChunkWindow:
    """Published chunks with absolute sequence numbers, and the latest join point among them."""

    __slots__ = ("chunks", "first_seq", "held", "join", "published", "window_bytes")

    def __init__(self, window_bytes: int) -> None:
        self.window_bytes = window_bytes
        self.chunks: deque[bytes] = deque()
        self.first_seq = 0  # sequence number of chunks[0]
        self.held = 0  # bytes in the window
        self.published = 0  # bytes ever published
        self.join: tuple[int, int] | None = None  # the latest join point: chunk, offset in it

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.chunks)

    def append(self, chunk: bytes, join_at: int | None) -> int:
        """Store ``chunk`` at the live edge (``join_at``: where in it new players may start);
        its sequence number."""
        seq = self.first_seq + len(self.chunks)
        if join_at is not None:
            self.join = (seq, join_at)
        self.chunks.append(chunk)
        size = len(chunk)
        self.held += size
        self.published += size
        return seq

    def held_join(self) -> tuple[int, int] | None:
        """The latest join point, if its chunk is still held."""
        join = self.join
        return join if join is not None and join[0] >= self.first_seq else None

    def since_join(self) -> list[bytes]:
        """The chunks from the latest join point that are still held, the first cut there."""
        join = self.held_join()
        if join is None:
            return []
        seq, offset = join
        chunks = list(itertools.islice(self.chunks, seq - self.first_seq, None))
        chunks[0] = chunks[0][offset:]
        return chunks

    def trim(self, slowest: int) -> None:
        """Drop the chunks before ``slowest`` (the first chunk some reader still needs) that the
        latest join point does not need, and anything beyond the window."""
        if self.join is not None:
            slowest = min(slowest, self.join[0])
        chunks = self.chunks
        while chunks and (self.first_seq < slowest or self.held > self.window_bytes):
            if len(chunks) == 1 and self.first_seq >= slowest:
                break  # keep the live edge itself readable by whoever is on it
            self.held -= len(chunks.popleft())
            self.first_seq += 1
