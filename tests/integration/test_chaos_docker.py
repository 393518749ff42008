"""A chaos run: eight channels with three players each play for a minute while engines are killed
and hung at random under them. Every player must still be receiving at the end, capacity must
never count more used engines than there are, and no engine session, container or port leaks."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time

import aiohttp
import pytest

from acestream_gateway.http.keys import POOL, REGISTRY
from tests.integration.test_failover_docker import (
    channel_id,
    engine_stats,
    fleet_settings,
    ready_engines,
    running_ports,
)
from tests.support import Player, containers_of, wait_until
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker

CHAOS_S = 60
CHANNELS = 8
PLAYERS_PER_CHANNEL = 3


async def hang(port: int) -> None:
    """The engine stops answering its API (the stream it serves stalls too)."""
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/emulator/control"
        async with http.post(url, json={"api_delay_s": "never", "stall_after_s": 0}) as resp:
            assert resp.status == 200


async def test_players_keep_playing_while_engines_are_killed_and_hung_at_random(
    instance: str,
) -> None:
    settings = fleet_settings(
        instance,
        12,
        max_streams_per_engine=2,
        min_replicas=1,
        health_failure_threshold=2,
        health_probe_timeout_s=1,
        failover_attempts=6,
        stall_timeout_s=2,
    )
    rng = random.Random(5)
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        players = [
            Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(n + 1)}")
            for n in range(CHANNELS)
            for _ in range(PLAYERS_PER_CHANNEL)
        ]
        for player in players:
            await player.receives(188 * 100, timeout_s=60)
        pool = server.app[POOL]
        samples = 0
        faults: list[str] = []
        deadline = time.monotonic() + CHAOS_S
        next_fault = time.monotonic() + 3
        while time.monotonic() < deadline:
            capacity = pool.capacity()
            assert 0 <= capacity.used <= capacity.total, capacity
            assert capacity.available == capacity.total - capacity.used
            for load in pool.snapshot():
                assert load.streams <= settings.max_streams_per_engine
            samples += 1
            if time.monotonic() >= next_fault:
                busy = [x.engine for x in pool.snapshot() if x.streams]
                if busy:
                    victim = rng.choice(busy)
                    if rng.random() < 0.5:
                        subprocess.run(["docker", "kill", victim.id], capture_output=True)
                        faults.append(f"kill {victim.name}")
                    else:
                        await hang(victim.address.port)
                        faults.append(f"hang {victim.name}")
                next_fault = time.monotonic() + rng.uniform(4, 8)
            await asyncio.sleep(0.2)
        assert len(faults) >= 6, faults

        # Every player is still receiving stream data now.
        marks = [len(p.data) for p in players]
        await asyncio.sleep(6)
        stalled = [i for i, p in enumerate(players) if len(p.data) <= marks[i] + 188 * 100]
        assert not stalled, f"players {stalled} stopped receiving after {faults}"
        assert all(not p.ended.is_set() for p in players)
        assert len(server.app[REGISTRY].channels()) == CHANNELS
        assert samples > CHAOS_S  # capacity was sampled all along

        for player in players:
            await player.close()

        async def settled() -> bool:
            if pool.capacity().used:
                return False
            for port in running_ports(instance):
                try:
                    stats = await engine_stats(port)
                except aiohttp.ClientError:
                    return False
                if stats["sessions_active"]:
                    return False
            return True

        await wait_until(settled, timeout_s=60, interval_s=1)

        # Containers as planned: every running container is one pool engine, one port each.
        def as_planned() -> bool:
            listed = {c["Id"] for c in containers_of(instance)}
            return listed == {e.id for e in pool.engines()}

        await wait_until(as_planned, timeout_s=30, interval_s=1)
        running = {c["Id"] for c in containers_of(instance) if c["State"]["Running"]}
        ports = running_ports(instance)
        assert len(ports) == len(set(ports))
        assert len(running) <= settings.max_active_replicas
