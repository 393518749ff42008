"""Reading a session: held headers, the TS response, burst then real time, one reader, HLS."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest
from yarl import URL

from acestream_gateway.emulator.mpegts import TS_PACKET_SIZE
from acestream_gateway.emulator.server import Emulator
from tests.support import ffprobe_streams

from .conftest import StartEmulator
from .helpers import (
    CONTENT_ID,
    content_url,
    get_json,
    open_stream,
    probe,
    read_at_least,
    read_for,
    read_to_eof,
    start_session,
    stats,
    wait_for_readers,
)


async def test_stream_is_ts_with_neither_length_nor_chunking(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
        assert "Content-Length" not in resp.headers
        assert "Transfer-Encoding" not in resp.headers
        data = await read_at_least(resp, 100 * TS_PACKET_SIZE)
    assert len(data) == 100 * TS_PACKET_SIZE
    assert all(data[i] == 0x47 for i in range(0, len(data), TS_PACKET_SIZE))


async def test_headers_are_held_back_while_prebuffering(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(prebuffer_s=0.8)
    session = await start_session(http, emulator)
    started = time.monotonic()
    pending = asyncio.create_task(open_stream(http, session["playback_url"]))
    await asyncio.sleep(0.4)
    assert not pending.done()
    assert (await get_json(http, session["stat_url"]))["response"]["status"] == "prebuf"
    async with await pending as resp:
        assert time.monotonic() - started >= 0.7
        assert resp.status == 200
    assert (await get_json(http, session["stat_url"]))["response"]["status"] == "dl"


async def test_a_dead_channel_never_releases_headers_until_stopped(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(dead_ids=[CONTENT_ID])
    session = await start_session(http, emulator)
    location = await content_url(http, session["playback_url"])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.6):
            await http.get(location)
    await wait_for_readers(http, emulator, 0)  # the abandoned reader is noticed and let go

    # A raw client: aiohttp would retry the GET after the disconnect, and find no session (404).
    reader, writer = await asyncio.open_connection("127.0.0.1", emulator.port)
    writer.write(f"GET {URL(location).path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await wait_for_readers(http, emulator, 1)
    assert (await get_json(http, session["stat_url"]))["response"]["status"] == "prebuf"
    await get_json(http, session["command_url"] + "?method=stop")
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed without a response
    writer.close()


async def test_burst_arrives_at_link_speed_then_the_stream_runs_at_the_bitrate(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    burst, bitrate = 2_000_000, 4_000_000
    emulator = await start_emulator(burst_bytes=burst, bitrate_bps=bitrate)
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        started = time.monotonic()
        await read_at_least(resp, burst)
        burst_s = time.monotonic() - started
        real_time = await read_for(resp, 2.0)
    # At the bitrate the burst would take 4 s; at link speed it takes a fraction of that.
    assert burst_s < 1.5
    expected = bitrate / 8 * 2.0
    assert 0.75 * expected < real_time < 1.25 * expected


@pytest.mark.parametrize("interval_s", [0.1, 0.02])
async def test_after_the_burst_the_stream_is_written_in_one_piece_per_write_interval(
    start_emulator: StartEmulator, http: aiohttp.ClientSession, interval_s: float
) -> None:
    bitrate = 4_000_000
    emulator = await start_emulator(bitrate_bps=bitrate, write_interval_s=interval_s)
    session = await start_session(http, emulator)
    pieces = await _pieces(await content_url(http, session["playback_url"]), skip=188_000)
    # A reader as fast as loopback sees each write as one piece: bitrate x interval bytes.
    piece = bitrate / 8 * interval_s
    assert 0.5 * piece < statistics.median(pieces) < 1.5 * piece
    assert all(size % TS_PACKET_SIZE == 0 for size in pieces[:-1])


async def _pieces(location: str, *, skip: int, seconds: float = 1.0) -> list[int]:
    """The sizes of what one raw reader receives in ``seconds`` after the first ``skip`` bytes."""
    url = URL(location)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"GET {url.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(skip)
        sizes: list[int] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sizes.append(len(await reader.read(1 << 20)))
        return sizes
    finally:
        writer.close()


async def test_a_second_concurrent_reader_gets_a_response_aiohttp_rejects(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    location = await content_url(http, session["playback_url"])
    async with http.get(location) as first:
        await read_at_least(first, 188_000)
        for second_url in (location, await content_url(http, session["playback_url"])):
            with pytest.raises(aiohttp.ClientResponseError):
                await http.get(second_url)
        assert len(await read_at_least(first, 10 * TS_PACKET_SIZE)) == 10 * TS_PACKET_SIZE
    counters = await stats(http, emulator)
    assert counters["readers_rejected"] == 2
    assert counters["max_concurrent_readers"] == 1


async def test_a_later_reader_may_read_once_the_first_has_gone(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as first:
        await read_at_least(first, 1000)
    await wait_for_readers(http, emulator, 0)
    async with await open_stream(http, session["playback_url"]) as second:
        assert second.status == 200
        assert len(await read_at_least(second, 188_000)) == 188_000


async def test_the_reader_gets_eof_when_the_session_is_stopped(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        await read_at_least(resp, 188_000)
        await get_json(http, session["command_url"] + "?method=stop")
        await read_to_eof(resp)


@pytest.mark.ffmpeg
async def test_ffprobe_recognises_h264_in_mpegts_through_the_playback_url(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(burst_bytes=2_000_000)
    session = await start_session(http, emulator)
    streams = await ffprobe_streams(session["playback_url"], timeout_s=30)
    assert [s["codec_name"] for s in streams] == ["h264"]


async def test_hls_playlist_lists_recent_ts_segments(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator, path="/ace/manifest.m3u8")
    async with http.get(session["playback_url"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        playlist = await resp.text()
    lines = playlist.splitlines()
    assert lines[0] == "#EXTM3U"
    assert "#EXT-X-TARGETDURATION:2" in lines
    assert "#EXT-X-ENDLIST" not in lines
    segments = [line for line in lines if line.startswith("http://")]
    assert len(segments) == 3
    async with http.get(segments[0]) as resp:
        assert resp.headers["Content-Type"] == "video/mp2t"
        data = await resp.read()
    assert len(data) % TS_PACKET_SIZE == 0
    assert data[0] == 0x47
    missing = segments[-1].rsplit("/", 1)[0] + "/999.ts"
    async with http.get(missing) as resp:
        assert resp.status == 404


@pytest.mark.ffmpeg
async def test_ffprobe_recognises_h264_through_the_hls_playlist(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator, path="/ace/manifest.m3u8")
    data = await probe(session["playback_url"])
    assert data["format"]["format_name"] == "hls"
    assert [s["codec_name"] for s in data["streams"]] == ["h264"]
