"""``/engines``, ``/streams`` and ``/ace/status`` of a running gateway follow a playing stream;
the engine's figures come from the poller's rounds, never from a request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.integration.local import FAST, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL, Player, wait_until


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_the_listings_follow_a_playing_stream(emulators: Callable[..., Emulator]) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(stat_interval_s=0.2), engine) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert (await get_json(base + "/streams"))[1] == []
        assert (await get_json(base + "/ace/status"))[1] == {"streams": 0}
        _, engines = await get_json(base + "/engines")
        assert [(e["name"], e["state"], e["health"], e["streams"]) for e in engines] == [
            ("emulator-0", "ready", "healthy", 0)
        ]
        assert engines[0]["port"] == engine.port
        players = [Player(stream_url(server)), Player(stream_url(server))]
        try:
            for player in players:
                await player.receives(188 * 200)

            async def figures() -> Any:
                _, listed = await get_json(base + "/streams")
                return listed and listed[0]["engine_stats"]

            await wait_until(figures, timeout_s=10)
            _, listed = await get_json(base + "/streams")
            [stream] = listed
            assert stream["content_id"] == CHANNEL
            assert stream["kind"] == "id"
            assert stream["engine"]["name"] == "emulator-0"
            assert stream["players"] == 2
            assert stream["state"] == "playing"
            assert stream["bytes_in"] > 188 * 200
            assert stream["bytes_out"] >= 2 * 188 * 200
            assert stream["failovers"] == 0
            assert stream["started_at"].endswith("Z")
            stats = stream["engine_stats"]
            assert stats["status"] in ("dl", "prebuf")
            assert isinstance(stats["peers"], int)
            assert isinstance(stats["speed_down"], int)
            assert stats["livepos"] is not None
            _, engines = await get_json(base + "/engines")
            assert engines[0]["streams"] == 1
            assert engines[0]["players"] == 2
            assert engines[0]["channels"] == [stream["key"]]
            assert (await get_json(base + "/ace/status"))[1] == {"streams": 1}
            one = await get_json(f"{base}/ace/status?id={CHANNEL}")
            assert one == (200, {"clients": 2, "stream_id": CHANNEL})
            other = await get_json(f"{base}/ace/status?id={'0' * 40}")
            assert other[0] == 404
        finally:
            for player in players:
                await player.close()

        async def gone() -> bool:
            _, listed = await get_json(base + "/streams")
            return bool(listed == [])

        await wait_until(gone, timeout_s=10)


async def test_requests_never_ask_the_engine_for_figures(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(stat_interval_s=3600), engine) as server:
        base = f"http://127.0.0.1:{server.port}"
        player = Player(stream_url(server))
        try:
            await player.receives(188 * 100)
            for _ in range(10):
                _, listed = await get_json(base + "/streams")
                assert listed[0]["engine_stats"] is None  # the only round ran before it played
                await asyncio.sleep(0.05)
        finally:
            await player.close()
