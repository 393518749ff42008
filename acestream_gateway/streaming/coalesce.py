"""Gathering an engine's reads into the blocks players are sent.

Engines write a live stream in pieces of a few KB every 20 ms or so; handing every piece to every
player as a write of its own costs the gateway a system call per piece per player. Pieces are
gathered instead into blocks of at least ``max_bytes`` or whatever came within ``max_delay_s`` of
the last block (so no byte waits longer than that), and a join point always starts a block of its
own, so new players can start on it. Pure: the caller supplies the time and publishes the blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_BLOCK_BYTES = 64 * 1024
MAX_DELAY_S = 0.09  # under the 100 ms a player may wait for bytes the gateway holds back


@dataclass(frozen=True, slots=True)
class Block:
    """Bytes to publish as one chunk; ``join_point`` when it starts where new players may begin."""

    data: bytes
    join_point: bool = False


class Coalescer:
    """Pieces in, blocks out: at least ``max_bytes`` each, or all that is ``max_delay_s`` old."""

    __slots__ = ("_join", "_last_emit", "_pieces", "_size", "max_bytes", "max_delay_s")

    def __init__(self, max_bytes: int = MAX_BLOCK_BYTES, max_delay_s: float = MAX_DELAY_S) -> None:
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self._pieces: list[bytes] = []
        self._size = 0
        self._join = False
        self._last_emit = -math.inf

    @property
    def pending_bytes(self) -> int:
        return self._size

    @property
    def deadline(self) -> float | None:
        """When the pending bytes must go out, or None when nothing is pending."""
        return self._last_emit + self.max_delay_s if self._size else None

    def add(self, data: bytes, now: float, *, join_at: int | None = None) -> list[Block]:
        """Take one piece; ``join_at`` is the offset in it of a join point. The blocks due now."""
        out: list[Block] = []
        if join_at is not None:
            self._append(data[:join_at])
            self._emit(now, out)
            data = data[join_at:]
            self._join = bool(data)
        self._append(data)
        if self._size >= self.max_bytes or now >= self._last_emit + self.max_delay_s:
            self._emit(now, out)
        return out

    def due(self, now: float) -> list[Block]:
        """What must go out at ``now`` (the deadline passed) without waiting for another piece."""
        out: list[Block] = []
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self._emit(now, out)
        return out

    def flush(self, now: float) -> list[Block]:
        """Everything pending, as one block (the stream ended)."""
        out: list[Block] = []
        self._emit(now, out)
        return out

    def _append(self, data: bytes) -> None:
        if data:
            self._pieces.append(data)
            self._size += len(data)

    def _emit(self, now: float, out: list[Block]) -> None:
        if not self._size:
            return
        pieces = self._pieces
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        out.append(Block(data, self._join))
        self._pieces, self._size, self._join = [], 0, False
        self._last_emit = now
