"""The orchestrator status and readiness of a running gateway (in-process, engine emulators as
local processes): they follow playing streams, hold rule 1 in every sample of a burst, and say
why the gateway is not ready."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.http.keys import POOL
from tests.integration.local import FAST, OTHER, Emulator, gateway, settings, stream_url
from tests.support import Player, wait_until


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_the_status_follows_a_playing_stream(emulators: Callable[..., Emulator]) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(stream_linger_s=0.2), engine) as server:
        base = f"http://127.0.0.1:{server.port}"
        _, idle = await get_json(base + "/orchestrator/status")
        assert idle["status"] == "healthy"
        assert idle["engines"]["total"] == idle["engines"]["healthy"] == 1
        assert idle["capacity"]["used"] == 0
        assert idle["streams"] == {"active": 0, "total": 0, "players": 0, "players_hls": 0}
        player = Player(stream_url(server))
        try:
            await player.receives(188 * 100)
            _, playing = await get_json(base + "/orchestrator/status")
            assert playing["streams"] == {"active": 1, "total": 1, "players": 1, "players_hls": 0}
            assert playing["capacity"]["used"] == 1
            assert playing["capacity"]["available"] == 0
        finally:
            await player.close()

        async def idle_again() -> bool:
            _, body = await get_json(base + "/orchestrator/status")
            return bool(body["streams"]["total"] == 0 and body["capacity"]["used"] == 0)

        await wait_until(idle_again, timeout_s=10)


@pytest.mark.parametrize("reason", list(BlockedReason))
async def test_readiness_is_503_with_the_reason_when_nothing_has_room_and_the_fleet_cannot_grow(
    reason: BlockedReason,
) -> None:
    async with gateway(settings(max_active_replicas=3)) as server:
        url = f"http://127.0.0.1:{server.port}/ready"
        assert (await get_json(url))[0] == 200  # no engine yet, but the fleet can grow
        server.app[POOL].block(reason, f"blocked: {reason.value}", 7)
        status, body = await get_json(url)
        assert status == 503
        assert body["ready"] is False
        assert body["reason"] == reason.value
        assert body["detail"] == f"blocked: {reason.value}"
        assert body["recovery_eta_seconds"] in (6, 7)
        server.app[POOL].unblock(reason)
        assert (await get_json(url))[0] == 200


async def test_readiness_is_200_for_a_full_healthy_fleet_which_still_serves_joins(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    cfg = settings(max_active_replicas=1, max_streams_per_engine=1)
    async with gateway(cfg, engine) as server:
        url = f"http://127.0.0.1:{server.port}/ready"
        assert (await get_json(url))[0] == 200
        player = Player(stream_url(server))
        joiner = Player(stream_url(server))
        try:
            await player.receives(188 * 10)
            status, body = await get_json(url)
            assert status == 200
            assert body["ready"] is True
            assert body["can_place_now"] is False
            assert body["reason"] == "max_capacity"
            await joiner.receives(188 * 10)  # what a load balancer sends it: a join, served
            _, full = await get_json(f"http://127.0.0.1:{server.port}/orchestrator/status")
            assert full["provisioning"]["can_provision"] is False
            status, body = await get_json(stream_url(server, OTHER))
            assert status == 503, "a new channel is refused, as /ready's reason said"
        finally:
            await player.close()
            await joiner.close()


def channel(n: int) -> str:
    return f"{n:040x}"


async def test_capacity_holds_rule_1_in_every_sample_of_a_30_channel_burst(
    emulators: Callable[..., Emulator],
) -> None:
    engines = [emulators(**FAST) for _ in range(5)]
    samples: list[dict[str, int]] = []
    async with gateway(settings(provision_wait_s=1.0), *engines) as server:
        base = f"http://127.0.0.1:{server.port}"
        done = asyncio.Event()

        async def poll() -> None:
            async with aiohttp.ClientSession() as http:
                while not done.is_set():
                    async with http.get(base + "/orchestrator/status") as resp:
                        samples.append((await resp.json())["capacity"])
                    await asyncio.sleep(0.1)

        poller = asyncio.create_task(poll())
        players = [Player(stream_url(server, channel(n))) for n in range(30)]
        try:
            await asyncio.sleep(3)
            playing = [p for p in players if p.status == 200 and not p.ended.is_set()]
            assert len(playing) == 10  # five engines, two channels each
        finally:
            for player in players:
                await player.close()
            await asyncio.sleep(1)
            done.set()
            await poller
    assert len(samples) >= 20
    assert max(s["used"] for s in samples) == 5
    for sample in samples:
        assert 0 <= sample["used"] <= sample["total"] == 5
        assert sample["available"] == sample["total"] - sample["used"]
        assert sample["streams"] <= 10
