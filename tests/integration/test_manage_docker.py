"""The fleet's management actions against the real Docker daemon and the emulator image: start an
engine now, drain one (no new stream, removed once empty), remove one, reconcile now."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.app import create_app
from acestream_gateway.settings import Settings
from tests.support import (
    CHANNEL,
    Player,
    containers_of,
    emulator_fleet_settings,
    emulator_gateway_env,
    free_port,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.docker

KEY = "k3y"
AUTH = {"Authorization": f"Bearer {KEY}"}
OTHER = "0123456789abcdef0123456789abcdef01234567"


def fleet_settings(instance: str) -> Settings:
    return emulator_fleet_settings(
        instance,
        6,
        engine_env={"EMULATOR_PREBUFFER_S": "0", "EMULATOR_BURST_BYTES": "376000"},
        min_replicas=1,
        max_active_replicas=4,
        max_streams_per_engine=1,
        health_check_interval_s=1,
        stream_linger_s=0.2,
        api_key=KEY,
    )


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as resp:
        return resp.status, json.loads(await resp.text())


async def engines(base: str) -> list[dict[str, Any]]:
    _, listed = await call("GET", base + "/engines")
    return list(listed)


async def engine_of(base: str, content: str) -> str | None:
    _, listed = await call("GET", base + "/streams")
    for stream in listed:
        if stream["content_id"] == content and stream["engine"]:
            return str(stream["engine"]["id"])
    return None


async def test_an_operator_starts_drains_and_removes_engines(instance: str) -> None:
    server = TestServer(create_app(fleet_settings(instance)), host="127.0.0.1", port=free_port())
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    players: list[Player] = []
    try:

        async def ready_engines(n: int) -> bool:
            ready = [e for e in await engines(base) if e["state"] == "ready"]
            return len(ready) >= n

        await wait_until(lambda: ready_engines(1), timeout_s=60)
        assert (await call("POST", base + "/engines"))[0] == 401
        status, started = await call("POST", base + "/engines", AUTH)
        assert status == 201, started
        await wait_until(lambda: ready_engines(2), timeout_s=60)

        players.append(Player(f"{base}/ace/getstream?id={CHANNEL}"))
        await players[0].receives(188 * 50, timeout_s=60)
        first = await engine_of(base, CHANNEL)
        assert first is not None
        status, drained = await call("POST", f"{base}/engines/{first}/drain", AUTH)
        assert (status, drained["state"]) == (202, "draining")

        # A drained engine gets no new stream, even when it is the only one with room soon.
        players.append(Player(f"{base}/ace/getstream?id={OTHER}"))
        await players[1].receives(188 * 50, timeout_s=60)
        assert await engine_of(base, OTHER) not in (None, first)

        # Once its stream is stopped it carries nothing and is removed.
        status, _ = await call("DELETE", f"{base}/streams/{CHANNEL}", AUTH)
        assert status == 200

        async def gone() -> bool:
            ids = {c["Id"] for c in containers_of(instance)}
            return first not in ids and first not in {e["id"] for e in await engines(base)}

        await wait_until(gone, timeout_s=30)

        # Removing the engine of a playing stream moves the stream to another engine.
        second = await engine_of(base, OTHER)
        assert second is not None
        status, removed = await call("DELETE", f"{base}/engines/{second}", AUTH)
        assert (status, removed["removed"]) == (200, True)
        assert second not in {c["Id"] for c in containers_of(instance)}
        await players[1].receives(188 * 50, timeout_s=60)
        assert await engine_of(base, OTHER) not in (None, second)

        assert (await call("POST", base + "/fleet/reconcile", AUTH))[0] == 202
        assert (await call("POST", f"{base}/engines/nope/drain", AUTH))[0] == 404
        assert (await call("DELETE", f"{base}/engines/nope", AUTH))[0] == 404
    finally:
        for player in players:
            await player.close()
        await server.close()


async def test_concurrent_starts_by_operators_never_pass_max_active_replicas(
    instance: str, tmp_path: Path
) -> None:
    env = emulator_gateway_env(
        instance,
        12,
        {},
        MIN_REPLICAS="1",
        MAX_ACTIVE_REPLICAS="2",
        HEALTH_CHECK_INTERVAL_S="1",
        ENGINE_GRACE_PERIOD_S="600",
    )
    async with running_gateway(env, tmp_path / "gateway.log") as gateway:

        async def start() -> tuple[int, str, Any]:
            async with aiohttp.ClientSession() as http:
                async with http.post(gateway.url + "/engines") as resp:
                    return resp.status, resp.content_type, await resp.json()

        answers = await asyncio.gather(*(start() for _ in range(10)))
        assert all(kind == "application/json" for _, kind, _ in answers), answers
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [201] + [409] * 9, answers
        refusals = [body for status, _, body in answers if status == 409]
        assert all("MAX_ACTIVE_REPLICAS" in body["detail"] for body in refusals), refusals
        for _ in range(3):  # and no pass after them makes more
            assert len(containers_of(instance)) == 2
            await asyncio.sleep(1)
