"""Packet alignment: players only ever get whole 188-byte packets, even from a ragged upstream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.streaming.mpegts import (
    NULL_PACKET,
    PACKET_SIZE,
    SYNC_BYTE,
    JoinPoints,
    TsAligner,
    is_random_access,
)


def packets(n: int) -> bytes:
    return b"".join(bytes([SYNC_BYTE, 0, i % 256, 0x10]) + bytes([i % 256]) * 184 for i in range(n))


def test_null_packet_is_a_valid_ts_null_packet() -> None:
    assert len(NULL_PACKET) == PACKET_SIZE
    assert NULL_PACKET[0] == SYNC_BYTE
    assert ((NULL_PACKET[1] & 0x1F) << 8 | NULL_PACKET[2]) == 0x1FFF


@given(st.integers(1, 30), st.lists(st.integers(1, 700), max_size=40))
def test_any_split_of_the_stream_yields_the_same_whole_packets(count: int, cuts: list[int]) -> None:
    stream = packets(count)
    aligner = TsAligner()
    out = bytearray()
    pos = 0
    for cut in cuts:
        piece = aligner.feed(stream[pos : pos + cut])
        assert len(piece) % PACKET_SIZE == 0
        out += piece
        pos += cut
    out += aligner.feed(stream[pos:])
    assert bytes(out) == stream


def test_leading_garbage_is_skipped_up_to_the_first_packet() -> None:
    aligner = TsAligner()
    out = aligner.feed(b"HTTP junk\r\n" + packets(3))
    assert out == packets(3)
    assert aligner.skipped == len(b"HTTP junk\r\n")


def packet(pid: int, *, start: bool = False, random_access: bool = False) -> bytes:
    flags = 0x40 if start else 0x00
    header = bytes([SYNC_BYTE, flags | (pid >> 8), pid & 0xFF])
    if random_access:  # adaptation field (7 bytes: flags + PCR) then payload
        return header + bytes([0x30, 7, 0x50]) + bytes(6) + b"\xaa" * (PACKET_SIZE - 12)
    return header + bytes([0x10]) + b"\xaa" * (PACKET_SIZE - 4)


PAT, PMT = packet(0, start=True), packet(0x1000, start=True)
KEY, FRAME = packet(0x100, start=True, random_access=True), packet(0x100)


def test_the_join_point_is_the_pat_right_before_a_keyframe() -> None:
    data = PAT + PMT + KEY + FRAME + PAT + PMT + FRAME + FRAME + PAT + PMT + KEY + FRAME
    assert is_random_access(KEY)
    assert not is_random_access(FRAME)
    assert JoinPoints().last(data) == 8 * PACKET_SIZE


def test_without_keyframes_in_the_data_there_is_no_join_point_once_keyframes_were_seen() -> None:
    joins = JoinPoints()
    assert joins.last(PAT + PMT + KEY) == 0
    assert joins.last(FRAME + PAT + PMT + FRAME + FRAME) is None


def test_a_stream_that_never_flags_keyframes_joins_at_the_last_pat() -> None:
    assert JoinPoints().last(FRAME + PAT + PMT + FRAME + PAT + PMT + FRAME) == 4 * PACKET_SIZE


def test_a_pat_header_pattern_inside_a_payload_is_not_a_join_point() -> None:
    fake = bytes([SYNC_BYTE, 0x01, 0x00, 0x10]) + PAT[:3] + b"\xaa" * (PACKET_SIZE - 7)
    assert JoinPoints().last(fake + FRAME) is None
