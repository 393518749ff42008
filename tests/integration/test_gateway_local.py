"""The data path end to end without Docker: the gateway in-process, engine emulators as local
processes, players as aiohttp clients and ffprobe."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable

import aiohttp
import pytest

from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.streaming.mpegts import NULL_PACKET, is_random_access
from tests.integration.local import (
    FAST,
    OTHER,
    Emulator,
    app_capacity,
    gateway,
    read_some,
    settings,
    stream_url,
)
from tests.support import CHANNEL, ffprobe_streams, wait_until


async def test_a_player_gets_mpeg_ts_from_the_engine_and_the_session_stops_when_it_leaves(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        resp, data = await read_some(stream_url(server, pid="abc"), 188 * 500)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "video/mp2t"
        assert "Content-Length" not in resp.headers
        assert all(data[i] == 0x47 for i in range(0, len(data), 188))

        async def stopped() -> bool:
            stats = await engine.stats()
            return bool(stats["sessions_stopped"] == 1 and stats["sessions_active"] == 0)

        await wait_until(stopped, timeout_s=10)
        assert app_capacity(server)["used"] == 0


async def test_ffprobe_recognises_the_stream_through_the_gateway(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        streams = await ffprobe_streams(stream_url(server))
        assert any(s["codec_type"] == "video" and s["codec_name"] == "h264" for s in streams)


async def test_head_answers_like_the_stream_without_starting_an_engine_session(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        async with aiohttp.ClientSession() as http, http.head(stream_url(server)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "video/mp2t"
        assert (await engine.stats())["sessions_started"] == 0


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "one of id"),
        ("?id=nothex", "40 hexadecimal"),
        (f"?id={CHANNEL}&infohash={CHANNEL}", "exactly one input"),
        (f"?magnet=magnet:?xt=urn:btih:{CHANNEL}", "disabled"),
    ],
)
async def test_bad_input_gets_400_with_a_json_reason_and_touches_no_engine(
    emulators: Callable[..., Emulator], query: str, reason: str
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        url = f"http://127.0.0.1:{server.port}/ace/getstream{query}"
        for method in ("GET", "HEAD"):
            async with aiohttp.ClientSession() as http, http.request(method, url) as resp:
                assert resp.status == 400
                if method == "GET":
                    body = await resp.json()
                    assert body["error"] == "bad_request"
                    assert reason in body["detail"]
        assert (await engine.stats())["sessions_started"] == 0


async def test_a_channel_the_engine_refuses_gets_502_and_releases_its_claim(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST, unknown_ids=CHANNEL)
    async with gateway(settings(), engine) as server:
        resp, _ = await read_some(stream_url(server), 0)
        assert resp.status == 502
        assert app_capacity(server)["used"] == 0


async def test_no_engine_gets_503_with_retry_after_instead_of_a_hang() -> None:
    async with gateway(settings(max_active_replicas=1, provision_wait_s=0.3)) as server:
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"] == "no_capacity"
        assert time.monotonic() - started < 5


async def test_players_of_one_channel_share_one_engine_session(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        results = await asyncio.gather(
            *(read_some(stream_url(server), 188 * 200) for _ in range(5))
        )
        assert all(resp.status == 200 for resp, _ in results)
        stats = await engine.stats()
        assert stats["sessions_started"] == 1
        assert stats["max_concurrent_readers"] == 1


async def test_keepalive_null_packets_flow_while_the_engine_prebuffers(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**{**FAST, "prebuffer_s": "1.5"})
    async with gateway(settings(keepalive_interval_s=0.2), engine) as server:
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
            assert resp.status == 200
            started = time.monotonic()
            first = await asyncio.wait_for(resp.content.readexactly(188), 5)
            assert time.monotonic() - started < 1.0, "headers and keep-alive go out at once"
            assert first[0] == 0x47
            assert ((first[1] & 0x1F) << 8 | first[2]) == 0x1FFF


async def test_a_stalled_engine_without_failover_ends_the_players_stream_and_stops_the_session(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**{**FAST, "stall_after_s": "0.5", "burst_bytes": "188000"})
    cfg = settings(stall_timeout_s=1.0, keepalive_interval_s=5, failover_attempts=0)
    async with gateway(cfg, engine) as server:
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
            assert resp.status == 200
            async with asyncio.timeout(15):
                body = await resp.content.read()
            assert len(body) >= 188000

        async def cleaned_up() -> bool:
            stats = await engine.stats()
            return bool(stats["sessions_active"] == 0 and app_capacity(server)["used"] == 0)

        await wait_until(cleaned_up, timeout_s=10)
        assert (await engine.stats())["sessions_stopped"] == 1


async def test_shutdown_stops_every_engine_session(emulators: Callable[..., Emulator]) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(stream_linger_s=60), engine) as server:
        await read_some(stream_url(server), 188 * 10)
        await read_some(stream_url(server, OTHER), 188 * 10)
        assert (await engine.stats())["sessions_active"] == 2
    stats = await engine.stats()
    assert stats["sessions_active"] == 0
    assert stats["sessions_stopped"] == 2


async def test_status_is_json(emulators: Callable[..., Emulator]) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/health") as resp:
            assert json.loads(await resp.text()) == {"status": "ok"}
        async with http.get(f"http://127.0.0.1:{server.port}/ready") as resp:
            assert resp.status == 200


async def test_a_range_request_from_the_start_gets_the_live_stream_with_200(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(stream_url(server), headers={"Range": "bytes=0-"}) as resp:
                assert resp.status == 200
                assert "Content-Length" not in resp.headers
                assert "Content-Range" not in resp.headers
                assert (await resp.content.readexactly(188))[0] == 0x47


async def test_a_stalled_player_is_dropped_without_slowing_the_others(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(prebuffer_s="0", burst_bytes="4000000", bitrate_bps="8000000")
    cfg = settings(player_buffer_bytes=1024 * 1024, stall_timeout_s=2)
    async with gateway(cfg, engine) as server:
        # A player that asks for the stream and then never reads a byte.
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET /ace/getstream?id={CHANNEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
                received = 0
                started = time.monotonic()
                while time.monotonic() - started < 4:
                    received += len(await resp.content.read(65536))
                # Burst plus four seconds at 8 Mbit/s, whatever the stalled player does.
                assert received >= 4_000_000 + 3 * 1_000_000

                (channel,) = server.app[REGISTRY].channels()
                await wait_until(lambda: channel.broadcast.subscriber_count == 1, timeout_s=10)
        finally:
            stalled.close()


async def test_a_player_joining_a_running_channel_starts_with_pat_pmt_and_a_keyframe(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(prebuffer_s="0", burst_bytes="1000000", keyframe_interval_s="1")
    async with gateway(settings(), engine) as server:
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as first:
            await first.content.readexactly(188 * 2000)  # the channel runs
            for _ in range(3):
                started = time.monotonic()
                resp, data = await read_some(stream_url(server), 188 * 8)
                assert resp.status == 200
                assert time.monotonic() - started < 2
                packets = [data[i : i + 188] for i in range(0, len(data), 188)]
                pids = [(p[1] & 0x1F) << 8 | p[2] for p in packets]
                assert pids[0] == 0, "the program association table comes first"
                assert any(is_random_access(p) for p in packets), "then a keyframe"
        assert (await engine.stats())["sessions_started"] == 1


async def test_an_engine_that_answers_too_slowly_gets_502_quickly_and_no_session_lingers(
    emulators: Callable[..., Emulator],
) -> None:
    # The engine starts the session after its answer has already timed out; it is the only
    # engine there can be, so the channel has nowhere else to go.
    engine = emulators(**FAST, json_delay_s="1.0")
    cfg = settings(engine_api_timeout_s=0.5, max_active_replicas=1)
    async with gateway(cfg, engine) as server:
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
            assert resp.status == 502
            assert "did not answer" in (await resp.json())["detail"]
        assert time.monotonic() - started < 1.0

        async def cleaned_up() -> bool:
            stats = await engine.stats()
            done = stats["sessions_stopped"] == 1 and stats["sessions_active"] == 0
            return bool(done and app_capacity(server)["used"] == 0)

        await wait_until(cleaned_up, timeout_s=10)
        assert (await engine.stats())["sessions_started"] == 1


async def test_a_dead_channel_ends_after_the_first_data_timeout_and_its_session_is_stopped(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST, dead_ids=CHANNEL)
    cfg = settings(first_data_timeout_s=1.0, keepalive_interval_s=0.2)
    async with gateway(cfg, engine) as server:
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
            assert resp.status == 200
            async with asyncio.timeout(10):
                body = await resp.content.read()
        # Only keep-alive null packets were sent, then the stream ended instead of hanging.
        assert body
        assert all(body[i : i + 188] == NULL_PACKET for i in range(0, len(body), 188))

        async def stopped() -> bool:
            stats = await engine.stats()
            return bool(stats["sessions_active"] == 0 and stats["sessions_stopped"] == 1)

        await wait_until(stopped, timeout_s=10)
        assert app_capacity(server)["used"] == 0


async def test_a_blocked_fleet_refuses_a_new_channel_at_once_with_its_reason_and_eta() -> None:
    async with gateway(settings(max_active_replicas=3, provision_wait_s=30)) as server:
        pool = server.app[POOL]
        seen = []
        for eta in (12.2, 47.0):
            pool.block(BlockedReason.CIRCUIT_BREAKER, "engines keep failing to start", eta)
            started = time.monotonic()
            async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
                assert resp.status == 503
                body = await resp.json()
                seen.append(int(resp.headers["Retry-After"]))
            assert time.monotonic() - started < 2, "at once, not after PROVISION_WAIT_S"
            assert body["error"] == "no_capacity"
            assert body["reason"] == "circuit_breaker"
            assert body["detail"] == "engines keep failing to start"
        assert seen == [13, 47], "Retry-After follows the breaker's ETA, rounded up"
