"""A channel's live HLS window: the latest ``size`` segments, numbered for good.

Media sequence numbers never go back; the target duration is the ceiling of the longest segment
ever listed and is never lowered (players size their buffers by it); the discontinuity sequence
counts the discontinuities that slid out, so a player reloading the list keeps its timeline.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .segmenter import Cut


class SegmentMissing(Exception):
    """A segment that is not in the window; ``reason`` says why, for the player."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Segment:
    sequence: int
    data: bytes
    duration_s: float
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class Listing:
    """What a playlist shows at one moment."""

    target_duration: int
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[Segment, ...]


class Window:
    """The segments players can fetch: at most ``size``, the oldest dropped first."""

    def __init__(self, size: int, first_sequence: int = 0) -> None:
        self.size = size
        self._segments: deque[Segment] = deque()
        self._next = first_sequence
        self._discontinuities_gone = 0
        self._target = 1

    @property
    def next_sequence(self) -> int:
        return self._next

    @property
    def held_bytes(self) -> int:
        return sum(len(s.data) for s in self._segments)

    def add(self, cut: Cut) -> Segment:
        segment = Segment(self._next, cut.data, cut.duration_s, cut.discontinuity)
        self._next += 1
        self._segments.append(segment)
        self._target = max(self._target, math.ceil(cut.duration_s))
        while len(self._segments) > self.size:
            if self._segments.popleft().discontinuity:
                self._discontinuities_gone += 1
        return segment

    def get(self, sequence: int) -> Segment:
        first = self._segments[0].sequence if self._segments else self._next
        if sequence < first:
            raise SegmentMissing(f"segment {sequence} left the window (the oldest is {first})")
        if sequence >= self._next:
            raise SegmentMissing(f"segment {sequence} does not exist yet")
        return self._segments[sequence - first]

    def listing(self) -> Listing:
        first = self._segments[0].sequence if self._segments else self._next
        return Listing(self._target, first, self._discontinuities_gone, tuple(self._segments))
