"""The HLS segmenter over generated TS: hand-built packets (PCR, random-access flags, PAT/PMT,
PES timestamps near their wrap) and the engine emulator's TS writer as a real-looking source."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestream_gateway.emulator.mpegts import TsStream
from acestream_gateway.streaming.hls import segmenter as segmenter_module
from acestream_gateway.streaming.hls.playlist import render
from acestream_gateway.streaming.hls.segmenter import Cut, Segmenter
from acestream_gateway.streaming.hls.tsscan import PCR_WRAP, PTS_WRAP, Kind, scan
from acestream_gateway.streaming.hls.window import SegmentMissing, Window
from acestream_gateway.streaming.mpegts import NULL_PACKET, PACKET_SIZE, is_random_access

PMT_PID = 0x1000
VIDEO_PID = 0x100


# --- hand-built packets ----------------------------------------------------------------------


def _psi(pid: int, section: bytes) -> bytes:
    return (bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10, 0)) + section).ljust(
        PACKET_SIZE, b"\xff"
    )


PAT = _psi(
    0,
    bytes((0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xE0 | PMT_PID >> 8, PMT_PID & 0xFF))
    + b"\0" * 4,
)
PMT = _psi(
    PMT_PID,
    bytes(
        (
            0x02,
            0xB0,
            18,
            0,
            1,
            0xC1,
            0,
            0,
            0xE0 | VIDEO_PID >> 8,
            VIDEO_PID & 0xFF,
            0xF0,
            0,
            0x1B,
            0xE1,
            0x00,
            0xF0,
            0,
        )
    )
    + b"\0" * 4,
)


def pcr_packet(pcr: int, rap: bool = False) -> bytes:
    base, ext = divmod(pcr % PCR_WRAP, 300)
    field = (base << 15 | 0x3F << 9 | ext).to_bytes(6, "big")
    head = bytes((0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x30, 7, 0x50 if rap else 0x10))
    return (head + field).ljust(PACKET_SIZE, b"\xff")


def _stamp(prefix: int, ts: int) -> bytes:
    return bytes(
        (
            (prefix << 4) | ((ts >> 29) & 0x0E) | 1,
            (ts >> 22) & 0xFF,
            ((ts >> 14) & 0xFE) | 1,
            (ts >> 7) & 0xFF,
            ((ts << 1) & 0xFE) | 1,
        )
    )


def pes_packet(pts: int, rap: bool = False) -> bytes:
    pts %= PTS_WRAP
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + _stamp(2, pts)
    if rap:
        head = bytes((0x47, 0x40 | VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x30, 1, 0x40))
    else:
        head = bytes((0x47, 0x40 | VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x10))
    return (head + pes).ljust(PACKET_SIZE, b"\xff")


PLAIN = bytes((0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x10)).ljust(PACKET_SIZE, b"\xff")


def stream(frames: int, gop: int, fps: int, start_s: float, *, pcr: bool, rap: bool) -> bytes:
    """``frames`` frames of 4 packets each; a keyframe every ``gop`` opens with PAT, PMT."""
    out = []
    for n in range(frames):
        t = start_s + n / fps
        key = n % gop == 0
        if key:
            out += [PAT, PMT]
        if pcr:
            out.append(pcr_packet(round(t * 27_000_000), rap=rap and key))
            out.append(pes_packet(round(t * 90_000)))
        else:
            out.append(pes_packet(round(t * 90_000), rap=rap and key))
        out += [PLAIN, PLAIN]
    return b"".join(out)


def feed_in_blocks(
    segmenter: Segmenter, data: bytes, sizes: list[int], session: object
) -> list[Cut]:
    cuts, at, i = [], 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)] * PACKET_SIZE
        cuts += segmenter.feed(data[at : at + size], session)
        at, i = at + size, i + 1
    return cuts


def pcr_span(data: bytes) -> float:
    values = [e.value for e in scan(data) if e.kind is Kind.PCR]
    span = 0
    for a, b in itertools.pairwise(values):
        span += (b - a) % PCR_WRAP
    return span / 27_000_000


def starts_at_random_access(data: bytes) -> bool:
    return any(is_random_access(data, at) for at in range(0, 8 * PACKET_SIZE, PACKET_SIZE))


def check_segment(cut: Cut, *, rap: bool) -> None:
    assert len(cut.data) % PACKET_SIZE == 0
    assert cut.data[0] == 0x47
    assert cut.data[:PACKET_SIZE] == PAT or cut.data[1:3] == b"\x40\x00"
    assert cut.data[PACKET_SIZE + 1 : PACKET_SIZE + 3] == bytes(
        (0x40 | PMT_PID >> 8, PMT_PID & 0xFF)
    )
    if rap:
        assert starts_at_random_access(cut.data)


# --- properties ------------------------------------------------------------------------------

blocks = st.lists(st.integers(1, 400), min_size=1, max_size=8)


@settings(max_examples=15, deadline=None)
@given(
    gop=st.integers(5, 60),
    fps=st.sampled_from([24, 25, 30, 50]),
    segment_s=st.sampled_from([1.0, 2.0, 4.0]),
    start_s=st.sampled_from([0.0, 95_443.0, (PCR_WRAP / 27_000_000) - 3.0]),
    sizes=blocks,
)
def test_segments_start_with_tables_at_keyframes_and_last_their_pcr_span(
    gop: int, fps: int, segment_s: float, start_s: float, sizes: list[int]
) -> None:
    data = stream(fps * 30, gop, fps, start_s, pcr=True, rap=True)
    cuts = feed_in_blocks(Segmenter(segment_s), data, sizes, session=1)
    assert len(cuts) >= 2
    gop_s = gop / fps
    for cut in cuts:
        check_segment(cut, rap=True)
        # It ends at the first keyframe after the target: never before, at most a GOP after.
        assert cut.duration_s >= segment_s - 0.1
        assert cut.duration_s <= max(segment_s, 0) + gop_s + 0.1
        span = pcr_span(cut.data)
        assert abs(cut.duration_s - span) <= max(0.1 * span, 2 / fps)
        assert not cut.discontinuity


@settings(max_examples=10, deadline=None)
@given(sizes=blocks, start_s=st.sampled_from([0.0, PTS_WRAP / 90_000 - 5.0]))
def test_a_stream_without_pcr_is_timed_by_its_pes_timestamps_across_their_wrap(
    sizes: list[int], start_s: float
) -> None:
    data = stream(25 * 30, 25, 25, start_s, pcr=False, rap=True)
    cuts = feed_in_blocks(Segmenter(4.0), data, sizes, session=1)
    assert len(cuts) >= 5
    for cut in cuts:
        check_segment(cut, rap=True)
        assert math.isclose(cut.duration_s, 4.0, abs_tol=0.05)


@settings(max_examples=10, deadline=None)
@given(sizes=blocks)
def test_a_stream_without_random_access_marks_is_cut_by_time_at_its_tables(
    sizes: list[int],
) -> None:
    data = stream(25 * 40, 10, 25, 0.0, pcr=True, rap=False)
    cuts = feed_in_blocks(Segmenter(2.0), data, sizes, session=1)
    assert len(cuts) >= 5
    for cut in cuts:
        check_segment(cut, rap=False)
        assert 1.9 <= cut.duration_s <= 2.0 + 0.4 + 0.05


@settings(max_examples=10, deadline=None)
@given(sizes=blocks, split=st.integers(100, 2000))
def test_a_new_engine_session_is_never_mixed_into_a_segment_and_starts_a_discontinuity(
    sizes: list[int], split: int
) -> None:
    first = stream(25 * 20, 25, 25, 10.0, pcr=True, rap=True)
    second = stream(25 * 20, 25, 25, 5000.0, pcr=True, rap=True)
    segmenter = Segmenter(2.0)
    keepalive = segmenter.feed(NULL_PACKET, None)
    cuts = keepalive + feed_in_blocks(segmenter, first[: split * PACKET_SIZE], sizes, "a")
    cuts += feed_in_blocks(segmenter, second, sizes, "b")
    second_from = 4000 * 27_000_000
    sessions = [
        next(e.value for e in scan(cut.data) if e.kind is Kind.PCR) >= second_from for cut in cuts
    ]
    assert sessions == sorted(sessions)  # the old session's segments, then the new one's
    flagged = [i for i, cut in enumerate(cuts) if cut.discontinuity]
    if True in sessions and False in sessions:
        assert flagged == [sessions.index(True)]
    else:
        assert len(flagged) <= 1
    for cut in cuts:
        check_segment(cut, rap=True)
        # A segment's clock never jumps: one session's PCRs only.
        assert pcr_span(cut.data) < 3.0
        assert NULL_PACKET not in cut.data


def test_a_keyframe_far_from_its_tables_gets_copies_of_them_in_front() -> None:
    frames = []
    for n in range(25 * 20):
        t = n / 25
        if n % 5 == 0:
            frames += [PAT, PMT]  # tables every 200 ms, keyframes one frame after some of them
        frames += [
            pcr_packet(round(t * 27e6), rap=n % 25 == 1),
            PLAIN,
            PLAIN,
            PLAIN,
            PLAIN,
            PLAIN,
            PLAIN,
            PLAIN,
            PLAIN,
        ]
    cuts = feed_in_blocks(Segmenter(2.0), b"".join(frames), [50], session=1)
    assert len(cuts) >= 5
    for cut in cuts:
        assert cut.data[:PACKET_SIZE] == PAT
        assert cut.data[PACKET_SIZE : 2 * PACKET_SIZE] == PMT
        assert is_random_access(cut.data, 2 * PACKET_SIZE)


def test_the_emulators_stream_is_cut_at_its_keyframes() -> None:
    source = TsStream(bitrate_bps=2_000_000, keyframe_interval_s=1.0)
    segmenter = Segmenter(4.0)
    cuts: list[Cut] = []
    for _ in range(300):  # 43 s of stream
        cuts += segmenter.feed(source.read(180), 1)
    assert len(cuts) >= 8
    for cut in cuts:
        assert cut.data[1:3] == b"\x40\x00"
        assert starts_at_random_access(cut.data)
        assert math.isclose(cut.duration_s, 4.0, abs_tol=0.05)
        assert abs(cut.duration_s - pcr_span(cut.data)) <= 0.1 * cut.duration_s


# --- the window and the playlist --------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    durations=st.lists(st.floats(0.5, 12.0), min_size=1, max_size=40),
    breaks=st.sets(st.integers(0, 39)),
    size=st.integers(2, 8),
)
def test_the_window_slides_never_goes_back_and_never_lowers_its_target(
    durations: list[float], breaks: set[int], size: int
) -> None:
    window = Window(size, first_sequence=1000)
    longest, previous = 0.0, None
    for i, duration in enumerate(durations):
        window.add(Cut(b"\x47" * PACKET_SIZE, duration, i in breaks))
        listing = window.listing()
        longest = max(longest, duration)
        assert listing.target_duration == math.ceil(longest)
        assert all(s.duration_s <= listing.target_duration for s in listing.segments)
        assert len(listing.segments) == min(size, i + 1)
        assert listing.media_sequence == 1000 + max(0, i + 1 - size)
        gone = sum(1 for j in range(i + 1 - len(listing.segments)) if j in breaks)
        assert listing.discontinuity_sequence == gone
        if previous is not None:
            assert listing.media_sequence >= previous.media_sequence
        previous = listing
    oldest = window.listing().media_sequence
    if oldest > 1000:
        with pytest.raises(SegmentMissing, match="left the window"):
            window.get(oldest - 1)


def test_the_playlist_lists_the_window_with_measured_durations_and_discontinuities() -> None:
    window = Window(3, first_sequence=7)
    for i, duration in enumerate([4.0, 4.2, 3.96, 5.5]):
        window.add(Cut(b"", duration, i == 3))
    text = render(window.listing(), lambda seq: f"hls/{seq}.ts?id=x")
    assert text == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:8\n"
        "#EXTINF:4.200,\nhls/8.ts?id=x\n#EXTINF:3.960,\nhls/9.ts?id=x\n"
        "#EXT-X-DISCONTINUITY\n#EXTINF:5.500,\nhls/10.ts?id=x\n"
    )


def test_a_stream_without_any_clock_is_never_held_past_the_memory_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(segmenter_module, "_MAX_SEGMENT_BYTES", 100 * PACKET_SIZE)
    untimed = bytes((0x47, VIDEO_PID >> 8, VIDEO_PID & 0xFF, 0x30, 1, 0x40)).ljust(PACKET_SIZE)
    segmenter = Segmenter(1.0)
    for _ in range(50):
        assert segmenter.feed(PAT + PMT + untimed + PLAIN * 20, 1) == []
        assert segmenter._pieces_packets() <= 100 + 23
