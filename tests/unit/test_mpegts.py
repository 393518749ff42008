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
    pat_offsets,
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


_HEADERS = st.sampled_from(
    [
        bytes([SYNC_BYTE, 0x40, 0x00]),  # a PAT
        bytes([SYNC_BYTE, 0x00, 0x00]),  # PID 0 without payload unit start
        bytes([SYNC_BYTE, 0x40, 0x01]),  # another PID with payload unit start
        bytes([SYNC_BYTE, 0x60, 0x00]),  # a PAT header with the priority bit: not what we match
        bytes([0x00, 0x40, 0x00]),  # garbage where a sync byte should be
    ]
)


@given(
    st.lists(
        st.tuples(_HEADERS, st.sampled_from([b"\x00", b"\x47\x40\x00", b"\xaa"])), max_size=30
    ),
    st.integers(0, PACKET_SIZE - 1),
)
def test_pat_offsets_are_the_packets_whose_headers_start_a_pat(
    packets_: list[tuple[bytes, bytes]], tail: int
) -> None:
    # Payloads made of the PAT header's own bytes must never be taken for one.
    data = b"".join(h + (fill * PACKET_SIZE)[: PACKET_SIZE - 3] for h, fill in packets_)
    data += bytes([SYNC_BYTE, 0x40, 0x00])[:tail] + bytes(max(0, tail - 3))  # a ragged tail
    expected = [
        i * PACKET_SIZE
        for i in range(len(data) // PACKET_SIZE + 1)
        if data[i * PACKET_SIZE : i * PACKET_SIZE + 3] == bytes([SYNC_BYTE, 0x40, 0x00])
    ]
    assert list(pat_offsets(data)) == expected
