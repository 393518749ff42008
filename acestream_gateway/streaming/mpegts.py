"""The little of MPEG-TS the proxy needs: packet alignment and keep-alive null packets.

Chunks published to players always hold whole 188-byte packets, so a player joining between two
chunks starts on a packet boundary and null packets can be slipped in between chunks safely.
"""

from __future__ import annotations

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF

# A null packet (PID 0x1FFF, payload only): players discard it, but it keeps the socket busy.
NULL_PACKET = bytes([SYNC_BYTE, 0x1F, 0xFF, 0x10]) + b"\xff" * (PACKET_SIZE - 4)


class TsAligner:
    """Cuts an arbitrary byte stream into runs of whole TS packets, resynchronising on garbage."""

    __slots__ = ("_rest", "skipped")

    def __init__(self) -> None:
        self._rest = b""
        self.skipped = 0

    def feed(self, data: bytes) -> bytes:
        """Whole packets completed by ``data`` (possibly empty); the tail waits for more."""
        buf = self._rest + data if self._rest else data
        while buf and buf[0] != SYNC_BYTE:
            buf = buf[self._resync(buf) :]
        end = len(buf) // PACKET_SIZE * PACKET_SIZE
        self._rest = buf[end:]
        return buf if end == len(buf) else buf[:end]

    def _resync(self, buf: bytes) -> int:
        """How many bytes to skip: up to the first sync byte that the next packet confirms (or
        that the data ends too early to refute), or a whole packet's worth of garbage."""
        for offset in range(1, min(len(buf), PACKET_SIZE)):
            nxt = offset + PACKET_SIZE
            if buf[offset] == SYNC_BYTE and (nxt >= len(buf) or buf[nxt] == SYNC_BYTE):
                self.skipped += offset
                return offset
        skip = min(len(buf), PACKET_SIZE)
        self.skipped += skip
        return skip
