"""The MPEG-TS helpers on whatever an engine sends: arbitrary bytes never raise, the aligner cuts
them exactly as the packet rule says however they are split, and every helper takes time linear
in its input (garbage included: sixteen times the input may cost about sixteen times the CPU
time, never two hundred and fifty-six)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.streaming.mpegts import (
    PACKET_SIZE,
    SYNC_BYTE,
    JoinPoints,
    Splicer,
    TsAligner,
    is_random_access,
    pat_offsets,
)


def reference_alignment(stream: bytes) -> tuple[bytes, int]:
    """The packet rule, written the plainest way: skip to the first sync byte that the next
    packet confirms (or that the data ends too early to refute), at most a packet's worth at a
    time; then keep whole packets."""
    buf, skipped = stream, 0
    while buf and buf[0] != SYNC_BYTE:
        skip = min(len(buf), PACKET_SIZE)
        for offset in range(1, min(len(buf), PACKET_SIZE)):
            nxt = offset + PACKET_SIZE
            if buf[offset] == SYNC_BYTE and (nxt >= len(buf) or buf[nxt] == SYNC_BYTE):
                skip = offset
                break
        buf, skipped = buf[skip:], skipped + skip
    return buf[: len(buf) // PACKET_SIZE * PACKET_SIZE], skipped


# Bytes rich in sync bytes and PAT-like headers, so the interesting branches are taken often.
ts_like = st.lists(
    st.sampled_from([b"\x47", b"\x47\x40\x00", b"\x00", b"\xff", b"\x47\x40\x00\x30\x07\x50"])
    | st.binary(max_size=40),
    max_size=60,
).map(b"".join)
any_bytes = st.binary(max_size=3000) | ts_like


@given(any_bytes)
def test_one_feed_of_any_bytes_is_cut_by_the_packet_rule(stream: bytes) -> None:
    aligner = TsAligner()
    expected, skipped = reference_alignment(stream)
    assert aligner.feed(stream) == expected
    assert aligner.skipped == skipped


@given(any_bytes, st.lists(st.integers(1, 500), max_size=20))
def test_any_bytes_in_any_pieces_never_raise_and_come_out_as_whole_packets(
    stream: bytes, cuts: list[int]
) -> None:
    aligner, joins, splicer = TsAligner(), JoinPoints(), Splicer(patience_bytes=2 * PACKET_SIZE)
    pos = 0
    for cut in [*cuts, len(stream)]:
        packets = aligner.feed(stream[pos : pos + cut])
        pos += cut
        assert len(packets) % PACKET_SIZE == 0
        assert all(packets[i] == SYNC_BYTE for i in range(0, len(packets), PACKET_SIZE))
        for offset in range(0, len(packets), PACKET_SIZE):
            is_random_access(packets, offset)
        assert all(offset % PACKET_SIZE == 0 for offset in pat_offsets(packets))
        last = joins.last(packets)
        assert last is None or 0 <= last < len(packets)
        spliced = splicer.feed(packets)
        assert len(spliced) % PACKET_SIZE == 0


def cpu_time(work: Callable[[], object]) -> float:
    """The least CPU time (of this thread: other processes do not count) of a few runs."""
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return best


def garbage(kind: str, size: int) -> bytes:
    patterns = {
        "no sync byte": b"\x00",
        # a sync byte every 3 bytes, never where the packet after it would need one
        "unconfirmed sync bytes": b"\x00\x47\x00",
        "all sync bytes": b"\x47",
    }
    pattern = patterns[kind]
    return (pattern * (size // len(pattern) + 1))[:size]


def assert_linear(work: Callable[[bytes], object], make: Callable[[int], bytes]) -> None:
    """16 x the input costs less than 48 x the CPU time (quadratic work: 256 x). Runs shorter
    than half a millisecond count as half a millisecond: timer noise is not a cost."""
    small, large = make(256 * 1024), make(16 * 256 * 1024)
    ratio = cpu_time(lambda: work(large)) / max(cpu_time(lambda: work(small)), 0.0005)
    assert ratio < 48, f"16 x the input cost {ratio:.1f} x the time"


def test_the_aligner_is_linear_on_garbage() -> None:
    for kind in ("no sync byte", "unconfirmed sync bytes", "all sync bytes"):
        assert_linear(lambda data: TsAligner().feed(data), partial(garbage, kind))


def all_pats(size: int) -> bytes:
    """Packets that all look like a PAT: every one a candidate join point."""
    pat = bytes([SYNC_BYTE, 0x40, 0x00, 0x10]) + b"\x00" * (PACKET_SIZE - 4)
    return pat * (size // PACKET_SIZE)


def test_join_points_and_the_splicer_are_linear_on_candidates_everywhere() -> None:
    assert_linear(lambda data: JoinPoints().last(data), all_pats)
    assert_linear(lambda data: Splicer().feed(data), all_pats)
    assert_linear(lambda data: list(pat_offsets(data)), all_pats)
