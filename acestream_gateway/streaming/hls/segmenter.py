"""Cutting a channel's packet-aligned TS into HLS segments, once per channel. Pure: blocks in,
finished segments out.

A segment starts on a packet boundary with the PAT and PMT: at a PAT right before a
random-access point when the stream marks them (the join-point rule of ``streaming.mpegts``), or
at the random-access point itself with copies of the latest PAT and PMT put in front; a stream
that marks none is cut at PATs. It ends at the first such point once it holds ``segment_s`` of the
stream's own clock (PCR, or PES timestamps where there is no PCR), never wall time. Keep-alive
blocks are not media and are not fed. A new engine session (a failover spliced in) ends the
segment being cut, so no segment mixes two sessions, and the next one is a discontinuity.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mpegts import PACKET_SIZE
from .tsscan import (
    PCR_HZ,
    PCR_WRAP,
    PTS_HZ,
    PTS_WRAP,
    Event,
    Kind,
    Unwrapped,
    pat_pmt_pid,
    pmt_pids,
    scan,
)

_LOOKBACK = 8  # packets before a random-access point within which its PAT must be (PAT, PMT...)
_RAP_PATIENCE = 3.0  # a first segment waits this many target durations for a random-access point
_SLACK_S = 0.1  # a keyframe due at the target duration, stamped by a PCR a little before it
_FORCE = 4.0  # a segment with no cut point this many target durations long is cut at a PAT
_MAX_SEGMENT_BYTES = 64 * 1024 * 1024  # the memory bound when even that never comes


@dataclass(frozen=True, slots=True)
class Cut:
    """A finished segment: its bytes, its duration by the stream's clock, and whether it follows
    a break (another engine session) in the stream."""

    data: bytes
    duration_s: float
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class _Stamp:
    pcr: float | None
    pts: float | None

    def until(self, end: _Stamp) -> float:
        """Seconds from this stamp to ``end`` of the same session; a clock with no sample at this
        stamp started after it (its first sample is its zero)."""
        if end.pcr is not None:
            return max(0.0, end.pcr - (self.pcr or 0.0))
        if end.pts is not None:
            return max(0.0, end.pts - (self.pts or 0.0))
        return 0.0


class _Session:
    """What is known of one engine session's stream: its tables and its clocks."""

    def __init__(self) -> None:
        self.pmt_pid: int | None = None
        self.pcr_pid: int | None = None
        self.video_pid: int | None = None  # random-access marks of other streams (audio) ignored
        self.pts_pid: int | None = None
        self.pat = b""
        self.pmt = b""
        self.pcr = Unwrapped(PCR_HZ, PCR_WRAP)
        self.pts = Unwrapped(PTS_HZ, PTS_WRAP)
        self.rap_seen = False
        self.pat_at = -1  # absolute packet index of the latest PAT

    def stamp(self) -> _Stamp:
        return _Stamp(
            self.pcr.seconds if self.pcr.seen else None,
            self.pts.seconds if self.pts.seen else None,
        )

    def clock(self) -> float | None:
        stamp = self.stamp()
        return stamp.pcr if stamp.pcr is not None else stamp.pts

    def note(self, event: Event, packet: bytes) -> None:
        kind = event.kind
        if kind is Kind.PAT:
            self.pat = packet
            self.pmt_pid = pat_pmt_pid(packet)
        elif kind is Kind.SECTION and event.pid == self.pmt_pid:
            self.pmt = packet
            self.pcr_pid, self.video_pid = pmt_pids(packet)
        elif kind is Kind.PCR:
            if self.pcr_pid is None or self.pcr_pid == event.pid:
                self.pcr.sample(event.value)
        elif kind is Kind.PTS:
            if self.pts_pid is None:
                self.pts_pid = event.pid
            if self.pts_pid == event.pid:
                self.pts.sample(event.value)


class Segmenter:
    """Blocks of one channel in (tagged with the engine session they came from), cuts out."""

    def __init__(self, segment_s: float, first_segment_s: float | None = None) -> None:
        self.segment_s = segment_s
        self.first_segment_s = segment_s if first_segment_s is None else first_segment_s
        self._session_tag: object = None
        self._s = _Session()
        self._pieces: list[bytes] = []  # the segment being cut (or, before one, a short tail)
        self._head = b""  # PAT and PMT copies the segment being cut starts with
        self._first = 0  # absolute packet index of _pieces' first byte
        self._next = 0  # absolute packet index of the next packet fed
        self._started = False
        self._start = _Stamp(None, None)
        self._waiting_since: float | None = None  # clock when the wait for a first cut began
        self._emitted = False
        self._discontinuity = False

    def feed(self, data: bytes, session: object) -> list[Cut]:
        """Take one packet-aligned block of engine session ``session``; the segments it ended."""
        cuts: list[Cut] = []
        if session != self._session_tag:
            if self._session_tag is not None:
                self._end_session(cuts)
            self._session_tag = session
        base, done = self._next, 0
        s = self._s
        for event in scan(data):
            offset = event.index * PACKET_SIZE
            if event.kind is Kind.PAT:
                self._maybe_cut_at_pat(base + event.index, data, done, cuts)
                done = max(done, self._taken(base))
                s.pat_at = base + event.index
            elif event.kind is Kind.RAP and s.video_pid in (None, event.pid):
                s.rap_seen = True
                if self._due():
                    self._cut_at_rap(base + event.index, data, done, cuts)
                    done = max(done, self._taken(base))
            s.note(event, data[offset : offset + PACKET_SIZE])
            if self._waiting_since is None and not self._started:
                self._waiting_since = s.clock()
        self._pieces.append(data[done * PACKET_SIZE :] if done else data)
        self._next = base + len(data) // PACKET_SIZE
        if not self._started:
            self._keep_tail()
        elif self._pieces_packets() * PACKET_SIZE > _MAX_SEGMENT_BYTES:
            self._drop_segment()  # no clock or no cut point to end it by: never cut, never kept
        return cuts

    # --- deciding where to cut -------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self._start.until(self._s.stamp())

    def _target(self) -> float:
        return self.segment_s if self._emitted else self.first_segment_s

    def _due(self) -> bool:
        return not self._started or self._elapsed() >= self._target() - _SLACK_S

    def _maybe_cut_at_pat(self, at: int, data: bytes, done: int, cuts: list[Cut]) -> None:
        s = self._s
        if self._started:
            limit = self._target() if not s.rap_seen else _FORCE * self.segment_s
            if self._elapsed() < limit - _SLACK_S:
                return
        elif s.rap_seen or not self._patience_over():
            return
        self._cut(at, s.stamp(), b"", data, done, cuts)

    def _patience_over(self) -> bool:
        clock, since = self._s.clock(), self._waiting_since
        return (
            clock is not None
            and since is not None
            and clock - since >= (_RAP_PATIENCE * self.segment_s)
        )

    def _cut_at_rap(self, at: int, data: bytes, done: int, cuts: list[Cut]) -> None:
        s = self._s
        if s.pat_at >= 0 and at - s.pat_at <= _LOOKBACK and s.pat_at >= self._first:
            # Its tables are a few packets before it: the segment starts there, and is timed
            # from the keyframe (the time the cut was decided by).
            self._cut(s.pat_at, s.stamp(), b"", data, done, cuts)
        elif s.pat and s.pmt:
            self._cut(at, s.stamp(), s.pat + s.pmt, data, done, cuts)
        elif s.pat:
            self._cut(at, s.stamp(), s.pat, data, done, cuts)
        # no PAT seen yet: no segment can start here

    # --- cutting -------------------------------------------------------------------------------

    def _taken(self, base: int) -> int:
        """Packets of the current block already moved into ``_pieces`` (relative to ``base``)."""
        return max(0, self._first + self._pieces_packets() - base)

    def _pieces_packets(self) -> int:
        return sum(len(p) for p in self._pieces) // PACKET_SIZE

    def _cut(
        self, at: int, stamp: _Stamp, head: bytes, data: bytes, done: int, cuts: list[Cut]
    ) -> None:
        """End the segment being cut before absolute packet ``at`` (in ``_pieces`` or ``data``)
        and start the next one there, with ``head`` in front."""
        base = self._next
        upto = (at - base) * PACKET_SIZE
        if upto > done * PACKET_SIZE:
            self._pieces.append(data[done * PACKET_SIZE : upto])
        held = b"".join(self._pieces)
        split = (at - self._first) * PACKET_SIZE
        before, after = held[:split], held[split:]
        if self._started and before:
            self._emit(self._head + before, self._start.until(stamp), cuts)
        self._head = head
        self._pieces = [after] if after else []
        self._first = at
        self._start = stamp
        self._started = True

    def _emit(self, data: bytes, duration_s: float, cuts: list[Cut]) -> None:
        cuts.append(Cut(data, duration_s, self._discontinuity))
        self._discontinuity = False
        self._emitted = True

    def _keep_tail(self) -> None:
        """Before the first cut only the packets a cut may reach back to are kept."""
        held = b"".join(self._pieces)
        keep = min(len(held), _LOOKBACK * PACKET_SIZE)
        self._pieces = [held[len(held) - keep :]] if keep else []
        self._first = self._next - keep // PACKET_SIZE

    def _drop_segment(self) -> None:
        self._started = False
        self._head = b""
        self._start = _Stamp(None, None)
        self._waiting_since = None
        self._keep_tail()

    def _end_session(self, cuts: list[Cut]) -> None:
        """The engine session changed: what was cut of the old one ends here, and what follows
        is another stream."""
        if self._started:
            held = b"".join(self._pieces)
            duration = self._elapsed()
            if held and duration > 0:
                self._emit(self._head + held, duration, cuts)
        if self._emitted or self._started:
            self._discontinuity = True
        self._s = _Session()
        self._pieces, self._head, self._first = [], b"", self._next
        self._started = False
        self._start = _Stamp(None, None)
        self._waiting_since = None
