"""Players keep playing through engine failures: failover on local engine emulators, and the
session and claim accounting around it (no engine session outlives its channel unaccounted)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import (
    ContentRef,
    Engine,
    EngineAddress,
    EngineState,
    InputKind,
)
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.streaming.channel import Channel
from acestream_gateway.streaming.errors import ChannelError
from acestream_gateway.streaming.registry import StreamRegistry
from acestream_gateway.streaming.upstream import Timeouts
from tests.integration.local import (
    FAST,
    Emulator,
    app_capacity,
    gateway,
    settings,
    stream_url,
)
from tests.support import CHANNEL, Player, assert_resumes_cleanly, wait_until

FAILOVER = {"failover_backoff_s": 0.1, "stall_timeout_s": 1.0, "keepalive_interval_s": 0.2}


def the_channel(server: TestServer) -> Channel:
    (channel,) = server.app[REGISTRY].channels()
    return channel


async def test_a_stalled_upstream_fails_over_on_the_same_engine_and_the_player_keeps_playing(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST, stall_after_s="1.5")
    async with gateway(settings(**FAILOVER), engine) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 1000)
        await wait_until(lambda: the_channel(server).failovers >= 1, timeout_s=10)
        await engine.control(stall_after_s="never")
        await player.receives(500_000)  # two seconds of the new session at 2 Mbit/s
        assert not player.ended.is_set(), "the player kept its connection"
        assert player.status == 200
        assert assert_resumes_cleanly(bytes(player.data), the_channel(server).meter.splices) >= 1
        stats = await engine.stats()
        assert stats["sessions_active"] == 1
        assert stats["max_concurrent_sessions"] == 1, "the old session ended before the new one"
        await player.close()


async def test_an_upstream_that_ends_fails_over_and_the_player_keeps_playing(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST, end_after_s="1.0")
    async with gateway(settings(**FAILOVER), engine) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 1000)
        await wait_until(lambda: the_channel(server).failovers >= 1, timeout_s=10)
        await engine.control(end_after_s="never")
        await player.receives(500_000)
        assert not player.ended.is_set()
        assert assert_resumes_cleanly(bytes(player.data), the_channel(server).meter.splices) >= 1
        await player.close()
        await wait_until(lambda: app_capacity(server)["used"] == 0, timeout_s=10)
        stats = await engine.stats()
        assert stats["sessions_active"] == 0


async def test_an_engine_turning_unhealthy_moves_its_channel_to_another_engine(
    emulators: Callable[..., Emulator],
) -> None:
    first, second = emulators(**FAST), emulators(**FAST)
    async with gateway(settings(**FAILOVER), first, second) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 1000)
        claim = the_channel(server).claim
        assert claim is not None
        old, other = (first, second) if claim.engine.id == "emu0" else (second, first)
        server.app[POOL].set_state(claim.engine.id, EngineState.UNHEALTHY)
        await player.receives(500_000)
        assert not player.ended.is_set()
        assert (await other.stats())["sessions_active"] == 1

        async def old_session_stopped() -> bool:
            stats = await old.stats()
            return bool(stats["sessions_active"] == 0 and stats["sessions_stopped"] == 1)

        await wait_until(old_session_stopped, timeout_s=10)
        loads = {x.engine.id: x.streams for x in server.app[POOL].snapshot()}
        assert loads[claim.engine.id] == 0, "the old claim is released once its session stopped"
        assert assert_resumes_cleanly(bytes(player.data), the_channel(server).meter.splices) >= 1
        await player.close()


async def test_an_engine_process_that_dies_mid_stream_leaves_players_on_another_engine(
    emulators: Callable[..., Emulator],
) -> None:
    first, second = emulators(**FAST), emulators(**FAST)
    async with gateway(settings(**FAILOVER), first, second) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 1000)
        claim = the_channel(server).claim
        assert claim is not None
        dead, other = (first, second) if claim.engine.id == "emu0" else (second, first)
        dead.proc.kill()
        started = time.monotonic()
        await player.receives(300_000)
        gap = time.monotonic() - started
        assert not player.ended.is_set()
        assert (await other.stats())["sessions_active"] == 1
        assert gap < 5, f"new data within seconds of the engine's death, took {gap:.1f} s"
        await player.close()


async def test_when_every_engine_refuses_the_players_stream_ends_and_nothing_leaks(
    emulators: Callable[..., Emulator],
) -> None:
    first, second = emulators(**FAST), emulators(**FAST)
    async with gateway(settings(**FAILOVER, failover_attempts=3), first, second) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 1000)
        for engine in (first, second):
            await engine.control(unknown_ids="*")
        for engine in (first, second):
            await engine.control(end_sessions=True)
        await asyncio.wait_for(player.ended.wait(), 15)
        await wait_until(lambda: server.app[REGISTRY].channels() == [], timeout_s=10)
        await wait_until(lambda: app_capacity(server)["used"] == 0, timeout_s=10)
        for engine in (first, second):
            assert (await engine.stats())["sessions_active"] == 0


async def test_players_zapping_during_a_failover_never_open_a_second_session(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST, stall_after_s="1.0")
    cfg = settings(**{**FAILOVER, "failover_backoff_s": 0.5}, stream_linger_s=2)
    async with gateway(cfg, engine) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 500)
        await wait_until(lambda: the_channel(server).failovers >= 1, timeout_s=10)
        await engine.control(stall_after_s="never")
        for _ in range(5):  # leave and come back while the channel recovers
            zapper = Player(stream_url(server))
            await zapper.receives(188 * 10)
            await zapper.close()
        await player.receives(200_000)
        stats = await engine.stats()
        assert stats["max_concurrent_sessions"] == 1
        assert len(server.app[REGISTRY].channels()) == 1
        await player.close()


async def test_a_start_still_pending_when_its_last_player_leaves_is_stopped_once_it_answers(
    emulators: Callable[..., Emulator],
) -> None:
    # The engine answers after 1 s; the channel's only player leaves at once and the linger
    # (0.1 s) ends long before the answer comes: the session the engine then makes is stopped.
    engine = emulators(**FAST, json_delay_s="1.0")
    await engine.wait_up()
    pool = EnginePool(max_streams_per_engine=2, max_engines=1, provision_wait_s=1)
    pool.add(
        Engine("emu0", "emulator-0", EngineAddress("127.0.0.1", engine.port), EngineState.READY)
    )
    async with aiohttp.ClientSession() as http:
        registry = StreamRegistry(
            pool=pool,
            client=EngineClient(http, api_timeout_s=5, stop_timeout_s=2),
            timeouts=Timeouts(first_data_s=5, stall_s=2, keepalive_s=1),
            window_bytes=1 << 20,
            linger_s=0.1,
        )

        async def player() -> None:
            async with registry.play(ContentRef(InputKind.CONTENT_ID, CHANNEL)):
                await asyncio.sleep(10)

        task = asyncio.create_task(player())
        await asyncio.sleep(0.2)
        task.cancel()  # the player goes while the engine has not answered yet
        await asyncio.gather(task, return_exceptions=True)

        async def stopped() -> bool:
            stats = await engine.stats()
            return bool(stats["sessions_started"] == 1 and stats["sessions_active"] == 0)

        await wait_until(stopped, timeout_s=10)
        await wait_until(lambda: pool.capacity().used == 0, timeout_s=5)
        await registry.close()


async def test_a_timed_out_start_never_supersedes_a_later_session_of_the_same_channel(
    emulators: Callable[..., Emulator],
) -> None:
    # The first engine answers too late: the channel's first start moves to the other engine,
    # and the late session is found again by its pid and stopped. No session of the channel may
    # be put on the slow engine meanwhile, where the search would supersede it.
    slow, fast = emulators(**FAST, json_delay_s="1.0"), emulators(**FAST)
    async with gateway(settings(engine_api_timeout_s=0.5), slow, fast) as server:
        server.app[POOL].set_state("emu1", EngineState.DRAINING)  # the first start goes to slow
        player = Player(stream_url(server))
        await asyncio.sleep(0.2)
        server.app[POOL].set_state("emu1", EngineState.READY)
        await player.receives(188 * 1000)
        assert player.status == 200, "the first start moved to the engine that answers"

        async def late_session_stopped() -> bool:
            stats = await slow.stats()
            return bool(stats["sessions_started"] >= 1 and stats["sessions_active"] == 0)

        await wait_until(late_session_stopped, timeout_s=10)
        await player.receives(188 * 1000)
        for engine in (slow, fast):
            assert (await engine.stats())["sessions_superseded"] == 0
        assert not player.ended.is_set()
        await player.close()


async def test_an_unexpected_failure_in_a_start_ends_the_waiting_players_with_a_reason(
    emulators: Callable[..., Emulator],
) -> None:
    class BrokenClient(EngineClient):
        async def start_session(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise RuntimeError("a bug")

    pool = EnginePool(max_streams_per_engine=2, max_engines=1, provision_wait_s=1)
    pool.add(Engine("e", "engine", EngineAddress("127.0.0.1", 9), EngineState.READY))
    async with aiohttp.ClientSession() as http:
        registry = StreamRegistry(
            pool=pool,
            client=BrokenClient(http, api_timeout_s=1, stop_timeout_s=1),
            timeouts=Timeouts(first_data_s=1, stall_s=1, keepalive_s=1),
            window_bytes=1 << 20,
            linger_s=0.1,
        )
        content = ContentRef(InputKind.CONTENT_ID, CHANNEL)
        with pytest.raises(ChannelError) as failed:
            async with asyncio.timeout(5), registry.play(content):
                raise AssertionError("the channel cannot start")
        assert "a bug" not in failed.value.reason, "players get a reason, not the exception"
        await wait_until(lambda: registry.channels() == [], timeout_s=5)
        assert pool.capacity().used == 0
        await registry.close()


async def test_an_unreachable_engine_gets_a_reason_without_its_internal_address(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        engine.stop()
        async with aiohttp.ClientSession() as http, http.get(stream_url(server)) as resp:
            assert resp.status == 502
            text = await resp.text()
        assert "127.0.0.1" not in text
        assert str(engine.port) not in text


async def test_a_player_that_stops_reading_is_disconnected_and_does_not_keep_the_session(
    emulators: Callable[..., Emulator],
) -> None:
    # A burst far larger than the kernel's socket buffers: the player's writes back up.
    engine = emulators(prebuffer_s="0", burst_bytes="30000000", bitrate_bps="8000000")
    async with gateway(settings(stall_timeout_s=1.0), engine) as server:
        stuck = socket.create_connection(("127.0.0.1", server.port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(f"GET /ace/getstream?id={CHANNEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            await wait_until(lambda: server.app[REGISTRY].channels() != [], timeout_s=5)
            assert server.runner is not None
            web_server = server.runner.server
            assert web_server is not None
            await wait_until(lambda: not web_server.connections, timeout_s=10)
            await wait_until(lambda: server.app[REGISTRY].channels() == [], timeout_s=10)

            async def stopped() -> bool:
                return bool((await engine.stats())["sessions_active"] == 0)

            await wait_until(stopped, timeout_s=10)
        finally:
            stuck.close()


async def test_a_first_start_on_an_engine_that_died_plays_from_another_engine(
    emulators: Callable[..., Emulator],
) -> None:
    dead, alive = emulators(**FAST), emulators(**FAST)
    async with gateway(settings(**FAILOVER), dead, alive) as server:
        server.app[POOL].set_state("emu1", EngineState.DRAINING)  # the first start goes to dead
        dead.stop()
        player = Player(stream_url(server))
        await asyncio.sleep(0.2)
        server.app[POOL].set_state("emu1", EngineState.READY)
        await player.receives(188 * 1000)
        assert player.status == 200
        assert (await alive.stats())["sessions_active"] == 1
        await player.close()


async def test_an_engine_told_to_let_go_keeps_streaming_until_the_channel_has_a_new_home(
    emulators: Callable[..., Emulator],
) -> None:
    first, second = emulators(**FAST), emulators(**FAST)
    cfg = settings(**FAILOVER, provision_wait_s=20)
    async with gateway(cfg, first, second) as server:
        pool = server.app[POOL]
        pool.set_state("emu1", EngineState.DRAINING)  # no other home for now
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            player = Player(stream_url(server))
            await player.receives(188 * 1000)
            pool.retire("emu0")  # a false alarm: the stream itself is fine
            await asyncio.sleep(0.5)
            await player.receives(188 * 1000, timeout_s=2)  # still flowing from the old engine
            assert (await first.stats())["sessions_active"] == 1
            assert pool.waiting() == 1, "the channel waits for a new home"
            pool.set_state("emu1", EngineState.READY)  # the new home is ready
            await player.receives(500_000)
            assert not player.ended.is_set()
            assert (await second.stats())["sessions_active"] == 1

            async def old_stopped() -> bool:
                return bool((await first.stats())["sessions_active"] == 0)

            await wait_until(old_stopped, timeout_s=10)
            assert (
                assert_resumes_cleanly(bytes(player.data), the_channel(server).meter.splices) >= 1
            )
            await player.close()
        started = [e.get("engine") for e in logs if e["event"] == "engine_session_started"]
        assert started == ["emulator-0", "emulator-1"], "the channel's logs name its engine"


async def test_waiting_for_a_new_home_that_never_comes_is_one_attempt_bounded_by_the_wait(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    cfg = settings(**FAILOVER, provision_wait_s=2, failover_attempts=1)
    async with gateway(cfg, engine) as server:
        player = Player(stream_url(server))
        await player.receives(188 * 1000)
        server.app[POOL].set_state("emu0", EngineState.UNHEALTHY)  # and no other engine comes
        lost_at = time.monotonic()
        await asyncio.wait_for(player.ended.wait(), 15)
        ended_in = time.monotonic() - lost_at
        assert 1.5 < ended_in < 3.5, f"the players waited {ended_in:.1f} s for a new home"
        await wait_until(lambda: app_capacity(server)["used"] == 0, timeout_s=10)
