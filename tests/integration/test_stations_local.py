"""Playing channels of the lineup against engine emulator processes: failover between a channel's
sources at start and mid-stream on the same connections, one engine session per content whoever
plays it, every source dead, the tuner limit, keep-alive at once, and ffprobe on ``/auto/v``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.http.stations import STATIONS
from tests.integration.local import FAST, Emulator, gateway, settings
from tests.support import (
    CHANNEL,
    Player,
    assert_resumes_cleanly,
    ffprobe_streams,
    pid_of,
    wait_until,
)

A, B, C = ("a" * 40, "b" * 40, "c" * 40)
NULL_PID = 0x1FFF
PACKET = 188


def playlist(path: Path, *entries: tuple[str, str]) -> str:
    """A channel list: (display name, content id) per entry, in order of preference."""
    lines = ["#EXTM3U"]
    for name, content in entries:
        lines += [f"#EXTINF:-1,{name}", f"acestream://{content}"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@asynccontextmanager
async def tuner(
    tmp_path: Path, entries: list[tuple[str, str]], *emulators: Emulator, **overrides: object
) -> AsyncIterator[TestServer]:
    cfg = settings(channels_file=playlist(tmp_path / "list.m3u", *entries), **overrides)
    async with gateway(cfg, *emulators) as server:
        yield server


def url(server: TestServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def lineup(server: TestServer) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url(server, "/channels")) as resp:
        body: list[dict[str, Any]] = await resp.json()
        return body


def states(channel: dict[str, Any]) -> list[str]:
    return [source["state"] for source in channel["sources"]]


def packets(data: bytes | bytearray) -> list[bytes]:
    return [bytes(data[i : i + PACKET]) for i in range(0, len(data) - PACKET + 1, PACKET)]


def real(data: bytes | bytearray) -> int:
    """How many packets of ``data`` are not keep-alive."""
    return sum(1 for p in packets(data) if pid_of(p) != NULL_PID)


async def get_json(server: TestServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url(server, path)) as resp:
        assert resp.status == 200
        return await resp.json()


async def metric(server: TestServer, line_start: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url(server, "/metrics")) as resp:
        text = await resp.text()
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(value)


async def nothing_leaked(server: TestServer, *emulators: Emulator) -> None:
    pool: EnginePool = server.app[POOL]

    async def clean() -> bool:
        sessions = [(await e.stats())["sessions_active"] for e in emulators]
        return (
            not server.app[REGISTRY].running()
            and pool.capacity().used == 0
            and sessions == [0 for _ in emulators]
        )

    await wait_until(clean, timeout_s=15)


async def test_a_channel_plays_its_first_working_source_and_skips_failed_ones_next_time(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST, unknown_ids=A, dead_ids=B)
    entries = [("News", A), ("News", B), ("News", C)]
    async with tuner(tmp_path, entries, engine, first_data_timeout_s=2) as server:
        player = Player(url(server, "/channel/1"))
        await wait_until(lambda: real(player.data) >= 50, timeout_s=15, interval_s=0.05)
        [news] = await lineup(server)
        assert states(news) == ["bad", "bad", "current"]
        assert all(s["bad_until"] for s in news["sources"][:2])
        await player.close()
        await nothing_leaked(server, engine)

        await engine.control(reset_stats=True)
        started = time.monotonic()
        again = Player(url(server, "/channel/1"))
        await wait_until(lambda: real(again.data) >= 50, timeout_s=10, interval_s=0.05)
        assert time.monotonic() - started < 2, "the next start went straight to the third"
        assert (await engine.stats())["sessions_started"] == 1
        await again.close()
        await nothing_leaked(server, engine)


def resumed_at(data: bytes | bytearray, after: int) -> int:
    """The offset of the first real packet that follows keep-alive, at or after ``after``."""
    seen_gap = False
    for index in range(after // PACKET, len(data) // PACKET):
        is_null = pid_of(data[index * PACKET : index * PACKET + 3]) == NULL_PID
        if is_null:
            seen_gap = True
        elif seen_gap:
            return index * PACKET
    raise AssertionError("no data after a gap")


async def test_players_of_a_channel_move_to_its_next_source_on_the_same_connections(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engines = [emulators(**FAST), emulators(**FAST)]
    entries = [("Sport", A), ("Sport", B)]
    async with tuner(tmp_path, entries, *engines, failover_attempts=2) as server:
        players = [Player(url(server, "/channel/1")) for _ in range(3)]
        for player in players:
            await player.receives(200 * PACKET)
        before = [len(p.data) for p in players]
        for engine in engines:
            await engine.control(unknown_ids=[A], end_sessions=True)
        faulted = time.monotonic()
        for player, offset in zip(players, before, strict=True):
            await wait_until(
                lambda p=player, o=offset: real(p.data[o:]) >= 200,
                timeout_s=10 + 5,
                interval_s=0.05,
            )
        for player, offset in zip(players, before, strict=True):
            assert player.status == 200
            assert not player.ended.is_set()
            splice = resumed_at(player.data, offset)
            assert assert_resumes_cleanly(bytes(player.data), [splice]) == 1
            resumed = next(at for at, total in player.arrivals if total > splice)
            assert resumed - faulted < 10 + 5, "within the first-data timeout and a few seconds"
        [sport] = await lineup(server)
        assert states(sport) == ["bad", "current"]
        sessions = [(await e.stats())["sessions_active"] for e in engines]
        assert sum(sessions) == 1, "one engine session for the channel"
        [stream] = await get_json(server, "/streams")
        assert stream["content_id"] == B
        assert stream["stations"] == [{"number": 1, "name": "Sport", "source_failovers": 1}]
        channels = (await get_json(server, "/orchestrator/status"))["channels"]
        assert channels["tuned"] == 1
        [playing] = channels["playing"]
        assert playing["current_source"] == B
        assert playing["players"] == 3
        reason = 'acestream_gateway_source_failovers_total{reason="ended"}'
        assert await metric(server, reason) == 1
        for player in players:
            await player.close()
        await nothing_leaked(server, *engines)


async def test_a_direct_player_and_a_channel_player_of_one_content_share_one_session(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    async with tuner(tmp_path, [("Film", CHANNEL)], engine) as server:
        direct = Player(url(server, f"/ace/getstream?id={CHANNEL}"))
        await direct.receives(100 * PACKET)
        tuned = Player(url(server, "/channel/1"))
        await wait_until(lambda: real(tuned.data) >= 100, timeout_s=10, interval_s=0.05)
        stats = await engine.stats()
        assert stats["sessions_started"] == 1
        assert stats["sessions_active"] == 1
        assert len(server.app[REGISTRY].channels()) == 1
        for player in (direct, tuned):
            await player.close()
        await nothing_leaked(server, engine)


async def test_a_channel_whose_sources_are_all_dead_ends_its_responses_and_shows_none_working(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST, unknown_ids=f"{A},{B}")
    async with tuner(tmp_path, [("Dead", A), ("Dead", B)], engine) as server:
        player = Player(url(server, "/channel/1"))
        await asyncio.wait_for(player.ended.wait(), 15)
        assert player.status == 200
        assert real(player.data) == 0
        [dead] = await lineup(server)
        assert states(dead) == ["bad", "bad"]
        assert await metric(server, "acestream_gateway_channels_without_source") == 1
        status = await get_json(server, "/orchestrator/status")
        assert status["channels"]["without_source"] == 1
        assert status["channels"]["tuned"] == 0
        refused = 'acestream_gateway_source_failovers_total{reason="refused"}'
        assert await metric(server, refused) == 2
        await nothing_leaked(server, engine)
        async with aiohttp.ClientSession() as http, http.get(url(server, "/channel/1")) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"] == "no_source"
            assert "Retry-After" in resp.headers


async def test_a_channel_beyond_the_tuner_count_is_refused_with_503(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    entries = [("One", A), ("Two", B)]
    async with tuner(tmp_path, entries, engine, hdhr_tuner_count=1) as server:
        one = Player(url(server, "/auto/v1"))
        await one.receives(50 * PACKET)
        async with aiohttp.ClientSession() as http:
            async with http.get(url(server, "/auto/v2")) as resp:
                assert resp.status == 503
                body = await resp.json()
                assert body["error"] == "no_tuner"
                assert body["detail"]
                assert int(resp.headers["Retry-After"]) >= 1
            async with http.get(url(server, "/channel/2.ts")) as resp:
                assert resp.status == 503
        same = Player(url(server, "/channel/1"))  # one more player of a tuned channel is fine
        await same.receives(50 * PACKET)
        await one.close()
        await same.close()
        await wait_until(lambda: not server.app[REGISTRY].running(), timeout_s=10)
        two = Player(url(server, "/auto/v2"))
        await two.receives(50 * PACKET)
        await two.close()


async def test_keep_alive_reaches_a_tuner_player_at_once_while_the_engine_prebuffers(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**{**FAST, "prebuffer_s": "5", "json_delay_s": "1"})
    async with tuner(tmp_path, [("Slow", A)], engine, keepalive_interval_s=1.0) as server:
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.get(url(server, "/auto/v1?transcode=internet540")) as resp:
                assert resp.status == 200
                first = await asyncio.wait_for(resp.content.readexactly(PACKET), 1.5)
                assert time.monotonic() - started < 1.2
                assert pid_of(first) == NULL_PID


async def test_unknown_channel_numbers_are_404_and_head_probes_touch_no_engine(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    async with tuner(tmp_path, [("One", A)], engine) as server, aiohttp.ClientSession() as http:
        async with http.get(url(server, "/channel/7")) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "not_found"
        async with http.head(url(server, "/auto/v1")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "video/mp2t"
        assert (await engine.stats())["sessions_started"] == 0


async def test_ffprobe_reads_a_tuner_channel_as_h264(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    async with tuner(tmp_path, [("Film", CHANNEL)], engine) as server:
        streams = await ffprobe_streams(url(server, "/auto/v1?transcode=internet540"))
        assert "h264" in [s.get("codec_name") for s in streams]


@pytest.mark.parametrize(
    "slots",
    [
        pytest.param(1, id="the old source held the only slot"),
        pytest.param(2, id="room for both on the engine"),
    ],
)
async def test_a_channel_ends_its_failed_source_s_session_before_it_starts_the_next(
    emulators: Callable[..., Emulator], tmp_path: Path, slots: int
) -> None:
    # A stop that takes a while: with one slot the next source must wait for it; with two, only
    # the station's own order keeps the next session from starting beside the failed one.
    engine = emulators(**FAST, dead_ids=A, stop_delay_s="0.5")
    entries = [("Solo", A), ("Solo", B)]
    cfg = {"max_streams_per_engine": slots, "first_data_timeout_s": 1}
    async with tuner(tmp_path, entries, engine, **cfg) as server:
        player = Player(url(server, "/channel/1"))
        await wait_until(lambda: real(player.data) >= 200, timeout_s=15, interval_s=0.05)
        assert not player.ended.is_set()
        [solo] = await lineup(server)
        assert states(solo) == ["bad", "current"]
        assert (await engine.stats())["max_concurrent_sessions"] == 1, "never two at once"
        await player.close()
        await nothing_leaked(server, engine)


async def test_a_tuned_channel_asks_for_the_player_token_and_the_start_limit_like_getstream(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    entries = [("One", A), ("Two", B)]
    limits = {"player_token": "s3cret", "player_channel_starts_per_minute": 1}
    async with (
        tuner(tmp_path, entries, engine, **limits) as server,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url(server, "/channel/1")) as resp:
            assert resp.status == 401
        async with http.head(url(server, "/auto/v1?token=wrong")) as resp:
            assert resp.status == 403
        ranged = {"Range": "bytes=0-"}
        async with http.get(url(server, "/channel/1?token=s3cret"), headers=ranged) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "video/mp2t"
            assert "Content-Length" not in resp.headers
            await resp.content.readexactly(50 * PACKET)
        await wait_until(lambda: not server.app[REGISTRY].running(), timeout_s=10)
        async with http.get(url(server, "/auto/v2?token=s3cret")) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"] == "too_many_channels"


async def test_a_burst_of_tunings_never_passes_the_tuner_count(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    entries = [("One", A), ("Two", B), ("Three", C)]
    async with tuner(tmp_path, entries, engine, hdhr_tuner_count=2) as server:
        players = [Player(url(server, f"/auto/v{n}")) for n in (1, 2, 3, 1, 2, 3)]
        await wait_until(lambda: all(p.status for p in players), timeout_s=10, interval_s=0.05)
        tuned = {p.url for p in players if p.status == 200}
        assert len(tuned) == 2, [(p.url, p.status) for p in players]
        assert sorted(p.status for p in players) == [200, 200, 200, 200, 503, 503]
        assert server.app[STATIONS].tuned() == 2
        for player in players:
            await player.close()
        await nothing_leaked(server, engine)
