"""What the segmenter needs to know of TS packets: where the program tables, clock samples and
random-access points are, found without a Python loop over every packet.

Only packets that start a payload unit or carry an adaptation field can hold any of it, so those
are picked out with a stride slice of their header bytes and a translate (a few per block), and
only they are parsed. Clocks: the PCR (27 MHz, its 33-bit base wraps at 2^33 x 300) and, for
streams without one, the PES timestamps (90 kHz, wrapping at 2^33).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from ..mpegts import PACKET_SIZE, SYNC_BYTE

PCR_HZ = 27_000_000
PCR_WRAP = (1 << 33) * 300
PTS_HZ = 90_000
PTS_WRAP = 1 << 33

_PUSI = bytes(1 if b & 0x40 else 0 for b in range(256))
_ADAPTATION = bytes(1 if b & 0x20 else 0 for b in range(256))


class Kind(enum.Enum):
    PAT = "pat"
    SECTION = "section"  # a table section starts (the PMT, when its PID is the PAT's)
    RAP = "rap"  # a random_access_indicator: a keyframe starts in this packet
    PCR = "pcr"
    PTS = "pts"  # a PES timestamp (its DTS when it has one: decode order is monotonic)


@dataclass(frozen=True, slots=True)
class Event:
    """Something at packet ``index`` of a block; ``value`` is a clock sample or a PID."""

    index: int
    kind: Kind
    value: int = 0
    pid: int = 0


def _marked(column: bytes, table: bytes) -> list[int]:
    flags = column.translate(table)
    found, at = [], flags.find(1)
    while at != -1:
        found.append(at)
        at = flags.find(1, at + 1)
    return found


def scan(data: bytes) -> Iterator[Event]:
    """The events of packet-aligned ``data`` in stream order (a packet's PCR before its random
    access indicator: the clock at a keyframe is the keyframe's own)."""
    starts = _marked(data[1::PACKET_SIZE], _PUSI)
    adapted = _marked(data[3::PACKET_SIZE], _ADAPTATION)
    for index in sorted(set(starts).union(adapted)):
        offset = index * PACKET_SIZE
        if data[offset] != SYNC_BYTE:
            continue
        yield from _packet(data, offset, index)


def _packet(data: bytes, o: int, index: int) -> Iterator[Event]:
    pid = ((data[o + 1] & 0x1F) << 8) | data[o + 2]
    payload = o + 4
    if data[o + 3] & 0x20:
        length = data[o + 4]
        payload += 1 + length
        if length and o + 5 < o + PACKET_SIZE:
            flags = data[o + 5]
            if flags & 0x10 and length >= 7:
                yield Event(index, Kind.PCR, _pcr(data, o + 6), pid)
            if flags & 0x40:
                yield Event(index, Kind.RAP, pid=pid)
    if not data[o + 1] & 0x40 or not data[o + 3] & 0x10 or payload >= o + PACKET_SIZE:
        return
    if pid == 0:
        yield Event(index, Kind.PAT, pid=pid)
    elif pid != 0x1FFF:
        if data[payload : payload + 3] != b"\x00\x00\x01":
            yield Event(index, Kind.SECTION, pid=pid)
            return
        stamp = _pes_stamp(data, payload, o + PACKET_SIZE)
        if stamp is not None:
            yield Event(index, Kind.PTS, stamp, pid)


def _pcr(data: bytes, at: int) -> int:
    base = int.from_bytes(data[at : at + 5], "big") >> 7
    extension = ((data[at + 4] & 1) << 8) | data[at + 5]
    return base * 300 + extension


def _pes_stamp(data: bytes, p: int, end: int) -> int | None:
    if end - p < 19 or data[p : p + 3] != b"\x00\x00\x01" or not 0xC0 <= data[p + 3] <= 0xEF:
        return None
    flags = data[p + 7] >> 6
    if flags == 3:
        return _timestamp(data, p + 14)
    if flags == 2:
        return _timestamp(data, p + 9)
    return None


def _timestamp(data: bytes, at: int) -> int:
    b = data[at : at + 5]
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def pat_pmt_pid(packet: bytes) -> int | None:
    """The PMT PID of the first program a PAT packet lists, or None."""
    payload = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
    if payload >= PACKET_SIZE:
        return None
    section = payload + 1 + packet[payload]
    if section + 8 > PACKET_SIZE or packet[section] != 0:
        return None
    length = ((packet[section + 1] & 0x0F) << 8) | packet[section + 2]
    end = min(section + 3 + length - 4, PACKET_SIZE - 3)
    for at in range(section + 8, end, 4):
        if (packet[at] << 8) | packet[at + 1]:
            return ((packet[at + 2] & 0x1F) << 8) | packet[at + 3]
    return None


# stream_type values of video: MPEG-1/2, MPEG-4 part 2, H.264, H.265, AVS2/3, VC-1.
_VIDEO_TYPES = frozenset({0x01, 0x02, 0x10, 0x1B, 0x24, 0x42, 0xD2, 0xD4, 0xEA})


def pmt_pids(packet: bytes) -> tuple[int | None, int | None]:
    """The PCR PID and the first video PID a PMT packet names (None where it names none)."""
    payload = 4 + (1 + packet[4] if packet[3] & 0x20 else 0)
    if payload >= PACKET_SIZE:
        return None, None
    section = payload + 1 + packet[payload]
    if section + 12 > PACKET_SIZE or packet[section] != 2:
        return None, None
    pcr_pid = ((packet[section + 8] & 0x1F) << 8) | packet[section + 9]
    length = ((packet[section + 1] & 0x0F) << 8) | packet[section + 2]
    end = min(section + 3 + length - 4, PACKET_SIZE)
    at = section + 12 + (((packet[section + 10] & 0x0F) << 8) | packet[section + 11])
    while at + 5 <= end:
        if packet[at] in _VIDEO_TYPES:
            return pcr_pid, ((packet[at + 1] & 0x1F) << 8) | packet[at + 2]
        at += 5 + (((packet[at + 3] & 0x0F) << 8) | packet[at + 4])
    return pcr_pid, None


class Unwrapped:
    """A wrapping clock made monotonic: seconds since its first sample. A jump back, or forward
    by more than ``max_jump_s``, is a break in the stream's clock and adds nothing."""

    __slots__ = ("_hz", "_last", "_max_jump", "_total", "_wrap")

    def __init__(self, hz: int, wrap: int, max_jump_s: float = 30.0) -> None:
        self._hz = hz
        self._wrap = wrap
        self._max_jump = int(max_jump_s * hz)
        self._last: int | None = None
        self._total = 0

    @property
    def seen(self) -> bool:
        return self._last is not None

    @property
    def seconds(self) -> float:
        return self._total / self._hz

    def sample(self, raw: int) -> None:
        if self._last is not None:
            step = (raw - self._last) % self._wrap
            if step <= self._max_jump:
                self._total += step
        self._last = raw
