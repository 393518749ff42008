"""Gathering an engine's reads into the blocks players are sent.

Engines write a live stream in pieces of a few KB every 20 ms or so; handing every piece to every
player as a write of its own costs the gateway a system call per piece per player. Pieces are
gathered instead into blocks of at least ``max_bytes``, or of whatever came since the oldest
pending byte arrived ``max_delay_s`` ago (so no byte waits longer than that).

A block goes out with the piece after which waiting is pointless: when the next piece, due after
the usual gap between pieces, would come after the deadline anyway. An engine writing every 20 ms
thus gets blocks of the pieces of the last 95 ms, sent as the last of them arrives, and one
writing a large block every 100 ms has each sent at once; neither waits for a timer (a wake-up of
its own, with the bytes gone cold in the cache meanwhile). The timer is only the bound, for
pieces that stop coming.

A block remembers where in it the latest join point is, so new players can start there without
the block being cut in two (which would cost every player a write more). Pure: the caller
supplies the time and publishes the blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_BLOCK_BYTES = 256 * 1024
"""A block goes out once it holds this much, whatever its age (the engine's burst, high bitrates);
at usual bitrates the delay sends blocks first."""
MAX_DELAY_S = 0.095
"""How long a byte may wait for more to gather: under the 100 ms a player may wait for bytes the
gateway holds back, with room for a timer that fires a little late on a busy loop."""


@dataclass(frozen=True, slots=True)
class Block:
    """Bytes to publish as one chunk; ``join_at``, the offset in it of the latest join point (where
    new players may begin), if it holds one."""

    data: bytes
    join_at: int | None = None


class Coalescer:
    """Pieces in, blocks out: at least ``max_bytes`` each, or all that waited ``max_delay_s``."""

    __slots__ = (
        "_first_at",
        "_gap",
        "_join_at",
        "_last_at",
        "_pieces",
        "_size",
        "max_bytes",
        "max_delay_s",
    )

    def __init__(self, max_bytes: int = MAX_BLOCK_BYTES, max_delay_s: float = MAX_DELAY_S) -> None:
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self._pieces: list[bytes] = []
        self._size = 0
        self._join_at: int | None = None
        self._first_at = 0.0  # when the oldest pending byte arrived
        self._last_at = -math.inf  # when the latest piece arrived
        self._gap = math.inf  # the usual time between pieces (a moving average)

    @property
    def pending_bytes(self) -> int:
        return self._size

    @property
    def deadline(self) -> float | None:
        """When the pending bytes must go out, or None when nothing is pending."""
        return self._first_at + self.max_delay_s if self._size else None

    def add(self, data: bytes, now: float, *, join_at: int | None = None) -> Block | None:
        """Take one piece; ``join_at`` is the offset in it of a join point. The block due now."""
        if not data:
            return self.due(now)
        gap = now - self._last_at  # infinite for the first piece: nothing known yet
        self._gap = gap if self._gap == math.inf else self._gap + (gap - self._gap) / 4
        self._last_at = now
        if not self._size:
            self._first_at = now
        if join_at is not None:
            self._join_at = self._size + join_at
        self._pieces.append(data)
        self._size += len(data)
        # The next piece is expected a usual gap from now: if that is past the deadline, this
        # block can gather nothing more before it must go.
        if self._size >= self.max_bytes or now + self._gap >= self._first_at + self.max_delay_s:
            return self._emit()
        return None

    def due(self, now: float) -> Block | None:
        """What must go out at ``now`` (the deadline passed) without waiting for another piece."""
        deadline = self.deadline
        return self._emit() if deadline is not None and now >= deadline else None

    def flush(self) -> Block | None:
        """Everything pending, as one block (the stream ended)."""
        return self._emit() if self._size else None

    def _emit(self) -> Block:
        pieces = self._pieces
        block = Block(pieces[0] if len(pieces) == 1 else b"".join(pieces), self._join_at)
        self._pieces, self._size, self._join_at = [], 0, None
        return block
