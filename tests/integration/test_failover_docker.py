"""Engines fail, players keep playing: the gateway in-process with its real fleet on the Docker
daemon and the emulator image; engines are killed, stalled and ended under players' feet, and
bursts of requests are counted on the engines themselves."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.engines.model import EngineState
from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.settings import Settings
from acestream_gateway.streaming.mpegts import PACKET_SIZE
from tests.support import (
    CHANNEL,
    Player,
    assert_resumes_cleanly,
    containers_of,
    emulator_fleet_settings,
    wait_until,
)
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker


def channel_id(n: int) -> str:
    return f"{n:040x}"


def fleet_settings(instance: str, size: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "engine_env": {
            "EMULATOR_PREBUFFER_S": "0.3",
            "EMULATOR_BURST_BYTES": "500000",
            "EMULATOR_BITRATE_BPS": "2000000",
            "EMULATOR_KEYFRAME_INTERVAL_S": "1",
        },
        "max_active_replicas": size,
        "min_replicas": 1,
        "max_streams_per_engine": 1,
        "health_check_interval_s": 1,
        "engine_grace_period_s": 600,
        "stream_linger_s": 0.5,
        "keepalive_interval_s": 0.2,
        "stall_timeout_s": 2,
        "first_data_timeout_s": 10,
        "failover_backoff_s": 0.2,
        "provision_wait_s": 30,
        "docker_timeout_s": 20,
        **overrides,
    }
    return emulator_fleet_settings(instance, size, **values)


def ready_engines(server: TestServer) -> int:
    return sum(1 for x in server.app[POOL].snapshot() if x.engine.state is EngineState.READY)


async def engine_stats(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/emulator/stats") as resp:
            body: dict[str, Any] = await resp.json()
            return body


async def counters_of_answering_engines(instance: str) -> list[dict[str, Any]]:
    """The emulator counters of every running engine of the instance that answers (one still
    starting has had no session)."""
    found = []
    for port in running_ports(instance):
        try:
            found.append(await engine_stats(port))
        except aiohttp.ClientError:
            continue
    return found


def running_ports(instance: str) -> list[int]:
    return sorted(
        int(c["Config"]["Labels"]["acestream-gateway.port"])
        for c in containers_of(instance)
        if c["State"]["Running"]
    )


def start_in_broadcast(first_player: bytes, player: bytes) -> int:
    """Where a later player's stream began in the first player's (who read from offset 0)."""
    start = first_player.find(player[: PACKET_SIZE * 32])
    assert start >= 0, "every player reads the same broadcast"
    assert start % PACKET_SIZE == 0, "a joiner starts on a packet boundary"
    return start


async def test_killing_the_engine_of_a_channel_leaves_its_three_players_playing(
    instance: str,
) -> None:
    settings = fleet_settings(instance, 4)
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}"
        players = [Player(url)]
        await players[0].receives(188 * 1000)
        players += [Player(url), Player(url)]
        for player in players:
            await player.receives(188 * 500)
        # MIN_REPLICAS=1 counts empty engines: a warm spare is ready beside the busy one.
        await wait_until(lambda: ready_engines(server) == 2, timeout_s=60)
        (channel,) = server.app[REGISTRY].channels()
        assert channel.claim is not None
        victim = channel.claim.engine
        killed_at = time.monotonic()
        subprocess.run(["docker", "kill", victim.id], check=True, capture_output=True)
        for player in players:
            await player.receives(200_000, timeout_s=15)
        gaps = []
        for player in players:
            resumed = player.first_real_data_after(killed_at + 0.05)
            assert resumed is not None
            gaps.append(resumed - killed_at)
            assert not player.ended.is_set(), "every player kept its connection"
            shift = start_in_broadcast(bytes(players[0].data), bytes(player.data))
            splices = [at - shift for at in channel.meter.splices]
            assert assert_resumes_cleanly(bytes(player.data), splices) >= 1
        assert max(gaps) < 10, f"new data within 10 s of the kill, gaps {gaps}"
        print(f"failover gap after docker kill: {statistics.median(gaps):.2f} s (median)")

        # The killed engine is replaced; the channel plays on another one; nothing leaked.
        assert channel.claim is not None
        assert channel.claim.engine.id != victim.id
        await wait_until(lambda: victim.id not in {c["Id"] for c in containers_of(instance)}, 30)
        await wait_until(lambda: ready_engines(server) == 2, timeout_s=60)
        now_on = channel.claim.engine.address.port
        stats = await engine_stats(now_on)
        assert stats["sessions_active"] == 1
        assert stats["max_concurrent_sessions"] == 1
        for player in players:
            await player.close()

        async def no_sessions_left() -> bool:
            for port in running_ports(instance):
                if (await engine_stats(port))["sessions_active"]:
                    return False
            return True

        await wait_until(no_sessions_left, timeout_s=20)
        ports = running_ports(instance)
        assert len(ports) == len(set(ports)), "one port per engine"


async def test_an_upstream_that_stalls_or_ends_fails_over_and_the_player_continues(
    instance: str,
) -> None:
    settings = fleet_settings(instance, 4, stall_timeout_s=1)
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        player = Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}")
        await player.receives(188 * 1000)
        (channel,) = server.app[REGISTRY].channels()
        for fault in ({"stall_after_s": 0}, {"end_after_s": 0}):
            assert channel.claim is not None
            port = channel.claim.engine.address.port
            before = channel.failovers
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{port}/emulator/control"
                async with http.post(url, json=fault) as resp:
                    assert resp.status == 200
                await wait_until(lambda: channel.failovers > before, timeout_s=15)  # noqa: B023
                async with http.post(url, json=dict.fromkeys(fault, "never")) as resp:
                    assert resp.status == 200
            await player.receives(300_000, timeout_s=20)
            assert not player.ended.is_set()
        await player.close()


async def test_thirty_channels_at_once_never_put_more_than_two_sessions_on_an_engine(
    instance: str,
) -> None:
    settings = fleet_settings(
        instance, 16, max_streams_per_engine=2, min_replicas=1, provision_wait_s=60
    )
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)

        async def play(n: int) -> int:
            url = f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(n + 1)}"
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                if resp.status == 200:
                    await resp.content.readexactly(188 * 100)
                return resp.status

        statuses = await asyncio.gather(*(play(n) for n in range(30)))
        assert statuses.count(200) == 30, statuses
        counters = await counters_of_answering_engines(instance)
        assert sum(c["sessions_started"] for c in counters) == 30
        for stats in counters:
            assert stats["max_concurrent_sessions"] <= 2, stats
            assert stats["sessions_superseded"] == 0


async def test_fifty_first_players_of_one_channel_at_once_open_exactly_one_session(
    instance: str,
) -> None:
    settings = fleet_settings(instance, 3)
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}"

        async def play() -> int:
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                if resp.status == 200:
                    await resp.content.readexactly(188 * 50)
                return resp.status

        statuses = await asyncio.gather(*(play() for _ in range(50)))
        assert statuses == [200] * 50
        counters = await counters_of_answering_engines(instance)
        assert sum(c["sessions_started"] for c in counters) == 1
        assert all(c["max_concurrent_readers"] <= 1 for c in counters)


async def test_an_engine_that_stops_answering_loses_its_channel_to_another_engine(
    instance: str,
) -> None:
    settings = fleet_settings(
        instance, 4, health_failure_threshold=2, health_probe_timeout_s=1, stall_timeout_s=5
    )
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        player = Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}")
        await player.receives(188 * 1000)
        await wait_until(lambda: ready_engines(server) == 2, timeout_s=60)
        (channel,) = server.app[REGISTRY].channels()
        assert channel.claim is not None
        hung = channel.claim.engine
        async with aiohttp.ClientSession() as http:
            control = f"http://127.0.0.1:{hung.address.port}/emulator/control"
            async with http.post(control, json={"api_delay_s": "never"}) as resp:
                assert resp.status == 200
        hung_at = time.monotonic()
        # Its stream still flows, but the engine no longer answers its API: threshold x
        # (interval + probe timeout), then the channel moves and the engine is replaced.
        await wait_until(lambda: channel.claim is not None and channel.claim.engine is not hung, 15)
        moved_in = time.monotonic() - hung_at
        await player.receives(300_000)
        assert not player.ended.is_set()
        assert moved_in < 2 * (1 + 1) + 4, f"moved after {moved_in:.1f} s"
        await wait_until(lambda: hung.id not in {c["Id"] for c in containers_of(instance)}, 60)
        assert server.app[POOL].get(hung.id) is None
        await player.close()


async def test_when_every_engine_refuses_the_channel_its_players_end_and_nothing_leaks(
    instance: str,
) -> None:
    # Two engines at most: the busy one and its spare; both then refuse every channel.
    settings = fleet_settings(instance, 2, failover_attempts=3)
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        player = Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}")
        await player.receives(188 * 1000)
        await wait_until(lambda: ready_engines(server) == 2, timeout_s=60)
        ports = running_ports(instance)
        async with aiohttp.ClientSession() as http:
            for port in ports:
                url = f"http://127.0.0.1:{port}/emulator/control"
                async with http.post(url, json={"unknown_ids": "*"}) as resp:
                    assert resp.status == 200
            for port in ports:
                url = f"http://127.0.0.1:{port}/emulator/control"
                async with http.post(url, json={"end_sessions": True}) as resp:
                    assert resp.status == 200
        await asyncio.wait_for(player.ended.wait(), 30)
        await wait_until(lambda: server.app[REGISTRY].channels() == [], timeout_s=10)
        await wait_until(lambda: server.app[POOL].capacity().used == 0, timeout_s=10)
        for stats in await counters_of_answering_engines(instance):
            assert stats["sessions_active"] == 0
        assert len(running_ports(instance)) == 2, "refusals are not engine failures"
