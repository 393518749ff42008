"""A channel's HLS feed on its broadcast: fed every published block with its engine session,
started from the latest keyframe when the channel already plays, and blind to random-access
marks of streams other than the video."""

from __future__ import annotations

import asyncio

from acestream_gateway.emulator.mpegts import TsStream
from acestream_gateway.streaming.broadcast import Broadcast
from acestream_gateway.streaming.hls.feed import HlsFeed, HlsPolicy
from acestream_gateway.streaming.hls.segmenter import Segmenter
from acestream_gateway.streaming.mpegts import NULL_PACKET, PACKET_SIZE, JoinPoints
from tests.unit.test_hls_segmenter import PAT, PLAIN, _psi, check_segment, pcr_packet

PACKETS_PER_S = 2_000_000 // (PACKET_SIZE * 8)


def publish_seconds(broadcast: Broadcast, source: TsStream, seconds: float, session: int) -> None:
    joins = JoinPoints()
    for _ in range(round(seconds * 10)):
        block = source.read(PACKETS_PER_S // 10)
        broadcast.publish(block, join_at=joins.last(block), session=session)


async def test_a_feed_made_on_a_playing_channel_starts_at_its_latest_keyframe() -> None:
    broadcast = Broadcast(64 * 1024 * 1024)
    source = TsStream(bitrate_bps=2_000_000, keyframe_interval_s=2.0)
    publish_seconds(broadcast, source, 7.0, session=1)  # 1 s past the keyframe at 6 s
    broadcast.publish(NULL_PACKET)
    feed = HlsFeed(broadcast, HlsPolicy(window=4, segment_s=4.0))
    assert not feed.ready
    publish_seconds(broadcast, source, 1.2, session=1)  # past the keyframe at 8 s
    assert feed.ready
    (first,) = feed.window.listing().segments
    assert 1.9 <= first.duration_s <= 2.1  # from the keyframe at 6 s, not a whole 4 s segment
    publish_seconds(broadcast, source, 8.0, session=1)
    later = feed.window.listing().segments[1:]
    assert later
    assert all(3.9 <= s.duration_s <= 4.1 for s in later)


async def test_a_feed_made_before_any_data_waits_for_a_whole_first_segment() -> None:
    broadcast = Broadcast(64 * 1024 * 1024)
    feed = HlsFeed(broadcast, HlsPolicy(window=4, segment_s=4.0))
    source = TsStream(bitrate_bps=2_000_000, keyframe_interval_s=2.0)
    publish_seconds(broadcast, source, 3.5, session=1)
    assert not feed.ready
    publish_seconds(broadcast, source, 1.0, session=1)
    assert feed.ready
    assert 3.9 <= feed.window.listing().segments[0].duration_s <= 4.1


AUDIO_PID = 0x101
PMT_AV = _psi(
    0x1000,
    bytes((0x02, 0xB0, 23, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0))
    + bytes((0x1B, 0xE1, 0x00, 0xF0, 0, 0x0F, 0xE1, 0x01, 0xF0, 0))
    + b"\0" * 4,
)


def audio_rap() -> bytes:
    head = bytes((0x47, AUDIO_PID >> 8, AUDIO_PID & 0xFF, 0x30, 1, 0x40))
    return head.ljust(PACKET_SIZE, b"\xff")


def test_random_access_marks_of_audio_do_not_cut_segments() -> None:
    packets = []
    for n in range(25 * 20):
        t = n / 25
        key = n % 25 == 0  # a video keyframe a second
        if key:
            packets += [PAT, PMT_AV]
        packets += [pcr_packet(round(t * 27e6), rap=key), audio_rap(), PLAIN, PLAIN]
    segmenter = Segmenter(1.5)
    cuts = []
    data = b"".join(packets)
    for at in range(0, len(data), 40 * PACKET_SIZE):
        cuts += segmenter.feed(data[at : at + 40 * PACKET_SIZE], 1)
    assert len(cuts) >= 5
    for cut in cuts:
        assert cut.data[:PACKET_SIZE] == PAT
        assert cut.data[PACKET_SIZE : 2 * PACKET_SIZE] == PMT_AV
        assert cut.data[2 * PACKET_SIZE + 5] & 0x40  # the video keyframe follows the tables
        assert 1.9 <= cut.duration_s <= 2.1
        check_segment(cut, rap=True)


async def test_a_feed_nobody_fetches_from_lets_its_segments_go_and_stops_cutting() -> None:
    broadcast = Broadcast(64 * 1024 * 1024)
    source = TsStream(bitrate_bps=2_000_000, keyframe_interval_s=1.0)
    feed = HlsFeed(broadcast, HlsPolicy(window=4, segment_s=1.0, idle_s=0.2))
    publish_seconds(broadcast, source, 4.0, session=1)
    assert feed.window.listing().segments
    assert not feed.dormant
    await asyncio.sleep(0.3)  # the idle window passes with no fetch
    publish_seconds(broadcast, source, 0.1, session=1)
    assert feed.dormant
    assert feed.window.listing().segments == ()
    assert feed.window.held_bytes == 0
    feed.close()
    publish_seconds(broadcast, source, 4.0, session=1)
    assert feed.window.listing().segments == ()
