"""HLS through the gateway, with engine emulators as local processes: segments cut from the one
shared engine session, a sliding window, the player checks of ``/ace/getstream``, the channel's
life after its last fetch, and real players' toolchain (ffprobe, ffmpeg) reading it."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from yarl import URL

from acestream_gateway.streaming.hls.tsscan import PCR_WRAP, Kind, scan
from acestream_gateway.streaming.mpegts import PACKET_SIZE, is_random_access
from tests.integration.local import FAST, OTHER, Emulator, gateway, settings, stream_url
from tests.integration.test_metrics_local import samples
from tests.support import CHANNEL, need_ffmpeg, need_ffprobe, wait_until

HLS = {**FAST, "keyframe_interval_s": "1"}
FAST_HLS = {"hls_segment_s": 1.0, "hls_window": 3}


def hls_url(server: TestServer, channel: str = CHANNEL, **extra: str) -> str:
    return stream_url(server, channel, **extra).replace("/ace/getstream?", "/ace/manifest.m3u8?")


class Playlist:
    def __init__(self, url: str, text: str) -> None:
        self.url = url
        self.text = text
        lines = text.splitlines()
        self.tags = dict(
            line[1:].split(":", 1) for line in lines if line.startswith("#EXT-X-") and ":" in line
        )
        self.durations = [
            float(line[8:].rstrip(",")) for line in lines if line.startswith("#EXTINF:")
        ]
        self.uris = [line for line in lines if line and not line.startswith("#")]

    @property
    def media_sequence(self) -> int:
        return int(self.tags["EXT-X-MEDIA-SEQUENCE"])

    @property
    def target(self) -> int:
        return int(self.tags["EXT-X-TARGETDURATION"])

    def sequence(self, uri: str) -> int:
        found = re.match(r"hls/(\d+)\.ts\?", uri)
        assert found, uri
        return int(found.group(1))

    def absolute(self, uri: str) -> str:
        return str(URL(self.url).join(URL(uri)))


async def fetch_playlist(http: aiohttp.ClientSession, url: str) -> Playlist:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert "no-store" in resp.headers["Cache-Control"]
        text = await resp.text()
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:3\n")
    return Playlist(url, text)


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, Any]:
    async with http.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            return resp.status, body, await resp.json()
        assert resp.headers["Content-Type"] == "video/mp2t"
        return resp.status, body, None


def pcr_span_s(data: bytes) -> float:
    values = [e.value for e in scan(data) if e.kind is Kind.PCR]
    return sum((b - a) % PCR_WRAP for a, b in itertools.pairwise(values)) / 27e6


async def test_segments_start_clean_at_keyframes_and_last_what_their_clock_says(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**HLS)
    async with gateway(settings(**FAST_HLS), engine) as server, aiohttp.ClientSession() as http:
        seen: dict[int, float] = {}
        sequences, targets = [], []
        deadline = time.monotonic() + 20
        while len(seen) < 6 and time.monotonic() < deadline:
            playlist = await fetch_playlist(http, hls_url(server))
            sequences.append(playlist.media_sequence)
            targets.append(playlist.target)
            assert all(d <= playlist.target for d in playlist.durations)
            for uri, duration in zip(playlist.uris, playlist.durations, strict=True):
                seq = playlist.sequence(uri)
                if seq in seen:
                    continue
                status, data, _ = await fetch(http, playlist.absolute(uri))
                assert status == 200
                assert data[0] == 0x47
                assert len(data) % PACKET_SIZE == 0
                assert data[1:3] == b"\x40\x00"  # a PAT first (then the PMT)
                assert any(is_random_access(data, at) for at in range(0, 8 * PACKET_SIZE, 188))
                span = pcr_span_s(data)
                assert abs(duration - span) <= 0.1 * span, (duration, span)
                seen[seq] = duration
            await asyncio.sleep(0.5)
        assert len(seen) >= 6
        assert sequences == sorted(sequences)
        assert sequences[-1] > sequences[0]
        assert targets == sorted(targets)
        # The oldest segment left the window: 404 with a reason; a channel that does not play
        # has no segments either.
        gone = f"http://127.0.0.1:{server.port}/ace/hls/{min(seen)}.ts?id={CHANNEL}"
        status, _, body = await fetch(http, gone)
        assert status == 404
        assert "left the window" in body["detail"]
        unknown = f"http://127.0.0.1:{server.port}/ace/hls/{min(seen)}.ts?id={OTHER}"
        status, _, body = await fetch(http, unknown)
        assert status == 404
        assert body["error"] == "not_found"
        assert (await engine.stats())["sessions_started"] == 1


async def test_a_ts_player_and_an_hls_client_share_one_engine_session(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**HLS)
    async with gateway(settings(**FAST_HLS), engine) as server, aiohttp.ClientSession() as http:
        async with http.get(stream_url(server)) as ts:
            assert ts.status == 200
            got = 0
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                got += len(await ts.content.read(65536))
                playlist = await fetch_playlist(http, hls_url(server))
                status, data, _ = await fetch(http, playlist.absolute(playlist.uris[-1]))
                assert status == 200
                assert data
            assert got > 1_000_000
        stats = await engine.stats()
        assert stats["sessions_started"] == 1
        assert stats["sessions_superseded"] == 0


async def test_an_hls_only_channel_stops_after_its_idle_window_and_linger_not_before(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**HLS)
    cfg = settings(**FAST_HLS, hls_idle_s=3, stream_linger_s=1)
    async with gateway(cfg, engine) as server, aiohttp.ClientSession() as http:
        await fetch_playlist(http, hls_url(server))
        last_fetch = time.monotonic()
        while time.monotonic() - last_fetch < 2:
            await asyncio.sleep(0.2)
            assert (await engine.stats())["sessions_active"] == 1
        await fetch_playlist(http, hls_url(server))  # another fetch holds it 3 s more
        last_fetch = time.monotonic()
        while time.monotonic() - last_fetch < 3.6:  # idle 3 s + linger 1 s, less a margin
            await asyncio.sleep(0.2)
            stats = await engine.stats()
            assert stats["sessions_active"] == 1
            assert stats["sessions_stopped"] == 0
        await wait_until(
            lambda: _stopped(engine), timeout_s=3
        )  # stopped on the engine, not left to time out
        assert (await engine.stats())["sessions_started"] == 1


async def _stopped(engine: Emulator) -> bool:
    stats = await engine.stats()
    return bool(stats["sessions_stopped"] == 1 and stats["sessions_active"] == 0)


async def _answer(url: str, source: str = "127.0.0.1") -> tuple[int, Any, str | None]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.get(url) as resp:
        if resp.status == 200:
            return 200, None, None
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_bad_ids_tokens_and_start_limits_answer_like_getstream(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**HLS)
    third = "fedcba9876543210fedcba9876543210fedcba98"
    cfg = settings(**FAST_HLS, player_token="s3cret", player_channel_starts_per_minute=1)
    async with gateway(cfg, engine) as server:
        for query in ({"channel": "nothex"}, {"channel": CHANNEL}, {"token": "wrong"}):
            channel = query.pop("channel", CHANNEL)
            ts = await _answer(stream_url(server, channel, **query))
            hls = await _answer(hls_url(server, channel, **query))
            assert ts[0] in (400, 401, 403)
            assert hls == ts
        assert (await _answer(hls_url(server, CHANNEL, token="s3cret")))[0] == 200
        # The HLS start counted against this client: a TS start of another channel is refused,
        # and an HLS start of a third the same way.
        ts = await _answer(stream_url(server, OTHER, token="s3cret"))
        hls = await _answer(hls_url(server, third, token="s3cret"))
        assert ts[0] == 429
        assert ts[1] == hls[1]
        assert hls[0] == 429
        # Segments need the token too, and the playlist's URLs carry it.
        async with aiohttp.ClientSession() as http:
            url = hls_url(server, CHANNEL, token="s3cret", pid="42")  # a client pid: tolerated
            playlist = await fetch_playlist(http, url)
            assert all("token=s3cret" in uri for uri in playlist.uris)
            assert not any("pid=" in uri for uri in playlist.uris)
            bare = playlist.absolute(playlist.uris[-1]).replace("&token=s3cret", "")
            assert (await _answer(bare))[0] == 401


async def test_ffprobe_finds_h264_and_ffmpeg_decodes_20_s_of_the_playlist(
    emulators: Callable[..., Emulator],
) -> None:
    path = need_ffmpeg()
    engine = emulators(**HLS)
    async with gateway(settings(hls_segment_s=1.0, hls_window=6), engine) as server:
        probe = await asyncio.create_subprocess_exec(
            *(need_ffprobe(), "-v", "error", "-show_streams", "-show_format", "-of", "json"),
            hls_url(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(probe.communicate(), 60)
        assert probe.returncode == 0, err.decode(errors="replace")
        found = json.loads(out)
        assert found["format"]["format_name"] == "hls"
        assert [s["codec_name"] for s in found["streams"]] == ["h264"]
        proc = await asyncio.create_subprocess_exec(
            *(path, "-v", "error", "-i", hls_url(server), "-t", "20", "-f", "null", "-"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert err.decode(errors="replace").strip() == ""
        assert (await engine.stats())["sessions_started"] == 1


async def test_hls_clients_count_as_players_in_streams_status_and_metrics(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**HLS)
    async with gateway(settings(**FAST_HLS), engine) as server:
        base = f"http://127.0.0.1:{server.port}"
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.2"):  # two distinct clients
            assert (await _answer(hls_url(server), source))[0] == 200
        async with aiohttp.ClientSession() as http:
            playlist = await fetch_playlist(http, hls_url(server))
            _, segment, _ = await fetch(http, playlist.absolute(playlist.uris[-1]))
            async with http.get(base + "/streams") as resp:
                (before_ts,) = await resp.json()
        # Segment bytes are bytes handed to players, like a TS player's.
        assert before_ts["bytes_out"] == len(segment) > 0
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as ts:
            assert len(await ts.content.readexactly(188 * 10)) == 1880
            async with http.get(base + "/streams") as resp:
                (stream,) = await resp.json()
            async with http.get(base + "/orchestrator/status") as resp:
                status = await resp.json()
            async with http.get(base + "/metrics") as resp:
                metrics = samples(await resp.text())
            async with http.get(base + "/engines") as resp:
                (engine_entry,) = await resp.json()
        assert stream["players"] == 3
        assert stream["players_hls"] == 2
        assert status["streams"]["players"] == 3
        assert status["streams"]["players_hls"] == 2
        assert metrics["acestream_gateway_players"] == 1
        assert metrics["acestream_gateway_players_hls"] == 2
        assert engine_entry["players"] == 3
        assert metrics["acestream_gateway_bytes_out_total"] >= len(segment)


async def test_a_first_playlist_request_holds_a_slow_channel_open_while_it_waits(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**{**HLS, "prebuffer_s": "3"})  # longer than idle window and linger
    cfg = settings(**FAST_HLS, hls_idle_s=2, stream_linger_s=0.5)
    async with gateway(cfg, engine) as server, aiohttp.ClientSession() as http:
        playlist = await fetch_playlist(http, hls_url(server))
        assert playlist.uris
        stats = await engine.stats()
        assert stats["sessions_started"] == 1
        assert stats["sessions_stopped"] == 0


async def test_a_probe_starts_nothing_and_a_refused_channel_answers_like_getstream(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**HLS, unknown_ids=OTHER)
    async with gateway(settings(**FAST_HLS), engine) as server:
        async with aiohttp.ClientSession() as http, http.head(hls_url(server)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert (await engine.stats())["sessions_started"] == 0
        ts = await _answer(stream_url(server, OTHER))
        hls = await _answer(hls_url(server, OTHER))
        assert ts[0] == 502
        assert hls == ts
