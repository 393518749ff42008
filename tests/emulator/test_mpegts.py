"""The emulator's synthetic MPEG-TS: packet layout, clocks, random-access points, decodability."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from acestream_gateway.emulator.mpegts import (
    HEIGHT,
    PMT_PID,
    TS_PACKET_SIZE,
    VIDEO_PID,
    WIDTH,
    TsStream,
)
from tests.support import need

PACKET_BITS = TS_PACKET_SIZE * 8
NAL_IDR, NAL_P, NAL_SPS, NAL_PPS, NAL_AUD, NAL_FILLER = 5, 1, 7, 8, 9, 12


class Packet(NamedTuple):
    position: int
    pid: int
    unit_start: bool
    cc: int
    random_access: bool
    pcr: int | None
    payload: bytes


class Pes(NamedTuple):
    first: int
    last: int
    pts: int
    dts: int
    es: bytes


def parse_packets(data: bytes) -> list[Packet]:
    assert len(data) % TS_PACKET_SIZE == 0
    return [
        parse_packet(i, data[i * TS_PACKET_SIZE : (i + 1) * TS_PACKET_SIZE])
        for i in range(len(data) // TS_PACKET_SIZE)
    ]


def parse_packet(index: int, p: bytes) -> Packet:
    assert p[0] == 0x47
    control = p[3] >> 4 & 3
    random_access, pcr, start = False, None, 4
    if control & 2:
        length = p[4]
        if length:
            random_access = bool(p[5] & 0x40)
            if p[5] & 0x10:
                value = int.from_bytes(p[6:12], "big")
                pcr = (value >> 15) * 300 + (value & 0x1FF)
        start = 5 + length
    payload = p[start:] if control & 1 else b""
    return Packet(
        index, (p[1] & 0x1F) << 8 | p[2], bool(p[1] & 0x40), p[3] & 15, random_access, pcr, payload
    )


def timestamp(b: bytes) -> int:
    return (b[0] >> 1 & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def video_pes(packets: list[Packet]) -> list[Pes]:
    """Complete PES packets of the video PID (the last, unfinished one is left out)."""
    starts = [p.position for p in packets if p.pid == VIDEO_PID and p.unit_start]
    video = {p.position: p.payload for p in packets if p.pid == VIDEO_PID}
    units = []
    for first, nxt in itertools.pairwise(starts):
        indices = [i for i in range(first, nxt) if i in video]
        data = b"".join(video[i] for i in indices)
        assert data[:4] == b"\x00\x00\x01\xe0"
        assert data[7] & 0xC0 == 0xC0, "PTS and DTS present"
        units.append(
            Pes(
                first,
                indices[-1],
                timestamp(data[9:14]),
                timestamp(data[14:19]),
                data[9 + data[8] :],
            )
        )
    return units


def nal_types(es: bytes) -> list[int]:
    types, pos = [], es.find(b"\x00\x00\x01")
    while pos >= 0:
        types.append(es[pos + 3] & 0x1F)
        pos = es.find(b"\x00\x00\x01", pos + 3)
    return types


def crc32_mpeg(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 31) ^ (byte >> bit & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            if top:
                crc ^= 0x04C11DB7
    return crc


def seconds(stream: TsStream, duration_s: float) -> list[Packet]:
    return parse_packets(stream.read(round(duration_s * stream.bitrate_bps / PACKET_BITS)))


def max_gap_s(indices: list[int], bitrate: int) -> float:
    return max(b - a for a, b in itertools.pairwise(indices)) * PACKET_BITS / bitrate


def check_clocks(packets: list[Packet], bitrate: int) -> None:
    """PAT/PMT every 100 ms, PCR every 40 ms, PCR in step with the byte count."""
    for pid in (0, PMT_PID):
        indices = [p.position for p in packets if p.pid == pid]
        assert indices[0] == 0 or pid == PMT_PID
        assert max_gap_s(indices, bitrate) <= 0.1
    timed = [p for p in packets if p.pcr is not None]
    assert all(p.pid == VIDEO_PID for p in timed)
    assert max_gap_s([p.position for p in timed], bitrate) <= 0.04
    first, last = timed[0], timed[-1]
    assert last.pcr is not None
    assert first.pcr is not None
    by_bytes = (last.position - first.position) * PACKET_BITS / bitrate
    assert (last.pcr - first.pcr) / 27e6 == pytest.approx(by_bytes, rel=0.01)


def check_frames_arrive_before_decoding(packets: list[Packet], bitrate: int) -> None:
    first = next(p for p in packets if p.pcr is not None)
    assert first.pcr is not None
    for pes in video_pes(packets):
        arrival_s = first.pcr / 27e6 + (pes.last + 1 - first.position) * PACKET_BITS / bitrate
        assert arrival_s < pes.dts / 90_000 < arrival_s + 1


def random_access_points(packets: list[Packet]) -> list[Packet]:
    return [p for p in packets if p.random_access]


def check_keyframe_every(packets: list[Packet], gop: int) -> None:
    """Exactly every gop-th frame (counted by PES starts) is a random-access point."""
    starts = [p for p in packets if p.pid == VIDEO_PID and p.unit_start]
    assert [p.random_access for p in starts] == [i % gop == 0 for i in range(len(starts))]
    assert len(random_access_points(packets)) == len(range(0, len(starts), gop))


def test_every_packet_is_188_bytes_and_starts_with_the_sync_byte() -> None:
    data = TsStream(bitrate_bps=2_000_000).read(3001)
    assert len(data) == 3001 * TS_PACKET_SIZE
    assert all(data[i] == 0x47 for i in range(0, len(data), TS_PACKET_SIZE))


def test_continuity_counters_advance_by_one_per_pid_across_reads_of_odd_sizes() -> None:
    stream = TsStream(bitrate_bps=3_000_000)
    data = b"".join(stream.read(n) for n in [1, 7, 13, 0, 188, 1001, 3, 2500, 17] * 3)
    last: dict[int, int] = {}
    for packet in parse_packets(data):
        if packet.pid in last:
            assert packet.cc == (last[packet.pid] + 1) % 16
        last[packet.pid] = packet.cc
    assert set(last) == {0, PMT_PID, VIDEO_PID}


@pytest.mark.parametrize(
    ("bitrate", "fps"), [(4_000_000, 25), (8_000_000, 25), (500_000, 30), (2_000_000, 60)]
)
def test_pat_pmt_and_pcr_repeat_often_enough_and_pcr_follows_the_byte_count(
    bitrate: int, fps: int
) -> None:
    check_clocks(seconds(TsStream(bitrate_bps=bitrate, fps=fps), 5), bitrate)


def test_pat_and_pmt_describe_one_h264_program_timed_by_the_video_pid() -> None:
    packets = seconds(TsStream(), 0.2)
    pat = next(p for p in packets if p.pid == 0).payload
    pat_section = pat[1 : 1 + 3 + (int.from_bytes(pat[2:4], "big") & 0xFFF)]
    assert crc32_mpeg(pat_section) == 0
    assert int.from_bytes(pat_section[10:12], "big") & 0x1FFF == PMT_PID
    pmt = next(p for p in packets if p.pid == PMT_PID).payload
    pmt_section = pmt[1 : 1 + 3 + (int.from_bytes(pmt[2:4], "big") & 0xFFF)]
    assert crc32_mpeg(pmt_section) == 0
    assert int.from_bytes(pmt_section[8:10], "big") & 0x1FFF == VIDEO_PID, "PCR PID"
    assert pmt_section[12] == 0x1B, "H.264"
    assert int.from_bytes(pmt_section[13:15], "big") & 0x1FFF == VIDEO_PID


def test_pcr_starts_at_the_requested_value_and_stream_time_counts_bytes_read() -> None:
    stream = TsStream(bitrate_bps=2_000_000, start_pcr_s=1000.0)
    packets = parse_packets(stream.read(1000))
    assert packets[2].pcr is not None
    # A PCR dates the byte holding its last base bit: byte 10 of its packet.
    expected_s = 1000 + (2 * TS_PACKET_SIZE + 10) * 8 / 2e6
    assert packets[2].pcr / 27e6 == pytest.approx(expected_s, abs=1e-6)
    assert stream.stream_time_s == pytest.approx(1000 * PACKET_BITS / 2e6)
    assert stream.bitrate_bps == 2_000_000


@pytest.mark.parametrize(("interval_s", "gop"), [(0.48, 12), (2.0, 50), (3.0, 75)])
def test_random_access_points_come_at_the_keyframe_interval(interval_s: float, gop: int) -> None:
    packets = seconds(TsStream(bitrate_bps=2_000_000, keyframe_interval_s=interval_s), 10)
    check_keyframe_every(packets, gop)
    points = random_access_points(packets)
    frames = {pes.first: pes for pes in video_pes(packets)}
    keyframe_dts = [frames[p.position].dts for p in points if p.position in frames]
    assert {b - a for a, b in itertools.pairwise(keyframe_dts)} == {gop * 3600}
    gaps_s = [(b.position - a.position) * PACKET_BITS / 2e6 for a, b in itertools.pairwise(points)]
    assert all(abs(gap - interval_s) <= 0.04 for gap in gaps_s)


def test_each_random_access_point_starts_a_frame_with_pcr_right_after_pat_and_pmt() -> None:
    packets = seconds(TsStream(bitrate_bps=4_000_000, keyframe_interval_s=1.0), 5)
    points = random_access_points(packets)
    assert len(points) == 5
    for point in points:
        assert (point.pid, point.unit_start) == (VIDEO_PID, True)
        assert point.pcr is not None
        assert point.position >= 2, "the stream opens with PAT and PMT"
        assert [packets[point.position - 2].pid, packets[point.position - 1].pid] == [0, PMT_PID]


def test_keyframes_carry_parameter_sets_and_an_idr_slice_and_other_frames_a_p_slice() -> None:
    packets = seconds(TsStream(bitrate_bps=2_000_000, keyframe_interval_s=1.0), 3)
    keyframes = {p.position for p in random_access_points(packets)}
    for pes in video_pes(packets):
        expected = (
            [NAL_AUD, NAL_SPS, NAL_PPS, NAL_IDR] if pes.first in keyframes else [NAL_AUD, NAL_P]
        )
        assert nal_types(pes.es) == [*expected, NAL_FILLER]
        assert pes.es.endswith(b"\xff\x80")


def test_frames_are_stamped_one_frame_apart_and_arrive_before_their_decode_time() -> None:
    packets = seconds(TsStream(bitrate_bps=1_000_000, fps=25), 6)
    frames = video_pes(packets)
    assert all(pes.pts == pes.dts for pes in frames)
    assert {b.dts - a.dts for a, b in itertools.pairwise(frames)} == {3600}
    check_frames_arrive_before_decoding(packets, 1_000_000)


def test_refuses_a_bitrate_too_low_for_its_keyframes() -> None:
    with pytest.raises(ValueError, match="too low"):
        TsStream(bitrate_bps=300_000, keyframe_interval_s=0.04)
    with pytest.raises(ValueError, match="too low"):
        TsStream(bitrate_bps=199_999)
    assert TsStream(bitrate_bps=200_000).bitrate_bps == 200_000


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=900), max_size=25))
def test_any_sequence_of_read_sizes_yields_the_same_bytes_as_one_read(sizes: list[int]) -> None:
    pieces = TsStream(bitrate_bps=1_500_000, keyframe_interval_s=0.5)
    whole = TsStream(bitrate_bps=1_500_000, keyframe_interval_s=0.5)
    assert b"".join(pieces.read(n) for n in sizes) == whole.read(sum(sizes))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bitrate=st.integers(min_value=200_000, max_value=10_000_000),
    fps=st.sampled_from([10, 24, 25, 30, 50, 60]),
    interval_s=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
)
def test_clocks_and_arrival_hold_for_any_configuration(
    bitrate: int, fps: int, interval_s: float
) -> None:
    try:
        stream = TsStream(bitrate_bps=bitrate, fps=fps, keyframe_interval_s=interval_s)
    except ValueError:
        reject()  # too low a bitrate for so many keyframes: refused, as tested above
    packets = seconds(stream, 2.5)
    check_clocks(packets, bitrate)
    check_frames_arrive_before_decoding(packets, bitrate)
    check_keyframe_every(packets, round(interval_s * fps))


def require_ffmpeg() -> None:
    need(
        shutil.which("ffprobe") is not None and shutil.which("ffmpeg") is not None,
        "ffprobe and ffmpeg (Debian package ffmpeg)",
    )


def whole_frames(data: bytes) -> bytes:
    """The stream cut before its last video PES, which a read may have left unfinished."""
    packets = parse_packets(data)
    last_start = max(p.position for p in packets if p.pid == VIDEO_PID and p.unit_start)
    return data[: last_start * TS_PACKET_SIZE]


@pytest.mark.ffmpeg
def test_ffprobe_recognises_an_h264_program_of_the_emulated_size(tmp_path: Path) -> None:
    require_ffmpeg()
    path = tmp_path / "stream.ts"
    data = whole_frames(TsStream().read(round(4 * 4_000_000 / PACKET_BITS)))
    path.write_bytes(data)
    probe = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames"),
            *("-print_format", "json", "-show_format", "-show_streams", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(probe.stdout)
    assert info["format"]["format_name"] == "mpegts"
    [video] = info["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", WIDTH, HEIGHT)
    assert video["r_frame_rate"] == "25/1"
    frames = [p for p in parse_packets(data) if p.pid == VIDEO_PID and p.unit_start]
    assert int(video["nb_read_frames"]) == len(frames)


@pytest.mark.ffmpeg
def test_ffmpeg_decodes_ten_seconds_without_errors(tmp_path: Path) -> None:
    require_ffmpeg()
    path = tmp_path / "stream.ts"
    path.write_bytes(whole_frames(TsStream().read(round(10 * 4_000_000 / PACKET_BITS))))
    decode = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (decode.returncode, decode.stderr) == (0, "")
