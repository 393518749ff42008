"""Packet alignment: players only ever get whole 188-byte packets, even from a ragged upstream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.streaming.mpegts import NULL_PACKET, PACKET_SIZE, SYNC_BYTE, TsAligner


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
