"""The little of MPEG-TS the proxy needs: packet alignment and keep-alive null packets.

Chunks published to players always hold whole 188-byte packets, so a player joining between two
chunks starts on a packet boundary and null packets can be slipped in between chunks safely.
"""

from __future__ import annotations

from collections.abc import Iterator

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF

# A null packet (PID 0x1FFF, payload only): players discard it, but it keeps the socket busy.
NULL_PACKET = bytes([SYNC_BYTE, 0x1F, 0xFF, 0x10]) + b"\xff" * (PACKET_SIZE - 4)


class TsAligner:
    """Cuts an arbitrary byte stream into runs of whole TS packets, resynchronising on garbage.

    Linear in its input whatever it is: garbage is skipped by moving an offset (one slice at the
    end, never one per skipped stretch), and sync bytes are looked for with ``bytes.find``.
    """

    __slots__ = ("_rest", "skipped")

    def __init__(self) -> None:
        self._rest = b""
        self.skipped = 0

    def feed(self, data: bytes) -> bytes:
        """Whole packets completed by ``data`` (possibly empty); the tail waits for more."""
        buf = self._rest + data if self._rest else data
        start = 0
        while start < len(buf) and buf[start] != SYNC_BYTE:
            start += self._resync(buf, start)
        end = start + (len(buf) - start) // PACKET_SIZE * PACKET_SIZE
        self._rest = buf[end:]
        return buf if start == 0 and end == len(buf) else buf[start:end]

    def _resync(self, buf: bytes, start: int) -> int:
        """How many bytes to skip from ``start``: up to the first sync byte that the next packet
        confirms (or that the data ends too early to refute), or a whole packet's worth of
        garbage."""
        limit = min(len(buf), start + PACKET_SIZE)
        at = buf.find(SYNC_BYTE, start + 1, limit)
        while at != -1:
            nxt = at + PACKET_SIZE
            if nxt >= len(buf) or buf[nxt] == SYNC_BYTE:
                break
            at = buf.find(SYNC_BYTE, at + 1, limit)
        skip = (limit if at == -1 else at) - start
        self.skipped += skip
        return skip


_PAT_FLAGS_PID_HI = 0x40  # a header's second byte: payload unit start, PID high bits 0
_RAP_LOOKAHEAD = 8  # packets after a PAT within which its keyframe must start (PAT, PMT, video)


def pat_offsets(data: bytes) -> Iterator[int]:
    """The offsets of the packets in packet-aligned ``data`` that start a PAT (sync byte, PID 0,
    payload unit start).

    Only packet headers are looked at: their second and third bytes are gathered with one stride
    slice each, so a piece of a few hundred packets costs two slices and a ``find`` or two, never
    a search through the payloads (where sync bytes and zeros abound).
    """
    second = data[1::PACKET_SIZE]
    third = data[2::PACKET_SIZE]
    index = second.find(_PAT_FLAGS_PID_HI)
    while index != -1:
        offset = index * PACKET_SIZE
        if index < len(third) and third[index] == 0 and data[offset] == SYNC_BYTE:
            yield offset
        index = second.find(_PAT_FLAGS_PID_HI, index + 1)


def is_random_access(packet: bytes | memoryview, offset: int = 0) -> bool:
    """Whether the packet at ``offset`` carries the random_access_indicator (a keyframe starts)."""
    has_adaptation = packet[offset + 3] & 0x20
    return bool(has_adaptation and packet[offset + 4] > 0 and packet[offset + 5] & 0x40)


class JoinPoints:
    """Finds where a new player can start cleanly: a PAT (then the PMT) right before a keyframe.

    Streams that never flag keyframes fall back to the last PAT, so joiners still get the
    program tables first.
    """

    __slots__ = ("keyframes_flagged",)

    def __init__(self) -> None:
        self.keyframes_flagged = False

    def last(self, data: bytes) -> int | None:
        """The offset of the last join point in packet-aligned ``data``, or None."""
        best: int | None = None
        for offset in pat_offsets(data):
            if self._keyframe_follows(data, offset):
                self.keyframes_flagged = True
                best = offset
            elif not self.keyframes_flagged:
                best = offset
        return best

    @staticmethod
    def _keyframe_follows(data: bytes, pat: int) -> bool:
        end = min(len(data), pat + _RAP_LOOKAHEAD * PACKET_SIZE)
        return any(is_random_access(data, at) for at in range(pat, end, PACKET_SIZE))


class Splicer:
    """Where a new engine session's stream may start for players already watching the channel.

    After a failover the players' decoders are mid-stream: the new data must start with the
    program tables and, when the stream flags keyframes, a keyframe right after them, so that they
    resynchronise at once. Bytes before that point are dropped (keep-alive packets cover the gap).
    A stream that never flags keyframes is spliced at its first PAT once ``patience_bytes`` went
    by; one without any PAT at all passes unchanged after twice that, rather than never.
    """

    __slots__ = ("_carry", "_patience", "done", "dropped")

    def __init__(self, patience_bytes: int = 4 * 1024 * 1024) -> None:
        self._patience = patience_bytes
        self._carry = b""
        self.done = False
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        """What of packet-aligned ``data`` may be published (empty until the splice point)."""
        if self.done:
            return data
        buf = self._carry + data if self._carry else data
        start = self._splice_point(buf)
        if start is None:
            # A PAT near the end may have its keyframe in the next read: keep that tail.
            keep = min(len(buf), _RAP_LOOKAHEAD * PACKET_SIZE)
            self.dropped += len(buf) - keep
            self._carry = buf[len(buf) - keep :]
            return b""
        self.done = True
        self.dropped += start
        self._carry = b""
        return buf[start:]

    def _splice_point(self, buf: bytes) -> int | None:
        """The offset in ``buf`` to start at, or None while it cannot tell yet.

        Patience is counted at each position in the stream (``dropped`` is where ``buf`` starts),
        so the point does not depend on how the upstream's reads happened to be cut.
        """
        # The first packet boundary at or past 2 x patience, as an offset in buf: from there on
        # the stream passes as it is.
        give_up = max(0, -(-(2 * self._patience - self.dropped) // PACKET_SIZE) * PACKET_SIZE)
        for offset in pat_offsets(buf):
            if offset >= give_up:
                break
            patient = self.dropped + offset < self._patience
            if not patient or JoinPoints._keyframe_follows(buf, offset):
                return offset
            if offset + _RAP_LOOKAHEAD * PACKET_SIZE > len(buf):
                return None  # its keyframe may start in the next read
        return give_up if give_up <= len(buf) else None
