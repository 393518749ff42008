"""The management API of a running gateway (in-process, engine emulators as local processes):
the API key (401 missing, 403 wrong, constant-time compared), PROTECT_READS, and stopping a
stream; fleet actions without a Docker fleet answer 409."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.integration.local import FAST, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL, Player, wait_until

KEY = "s3cret-key"
ACTIONS = [
    ("POST", "/engines"),
    ("POST", "/engines/emu0/drain"),
    ("DELETE", "/engines/emu0"),
    ("DELETE", f"/streams/{CHANNEL}"),
    ("POST", "/fleet/reconcile"),
]
READS = ["/orchestrator/status", "/engines", "/streams", "/metrics", "/ace/status"]


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


@pytest.mark.parametrize(("method", "path"), ACTIONS)
async def test_a_management_action_needs_the_key(method: str, path: str) -> None:
    async with gateway(settings(api_key=KEY)) as server:
        url = f"http://127.0.0.1:{server.port}{path}"
        status, body = await call(method, url)
        assert status == 401
        assert body["error"] == "unauthorized"
        status, body = await call(method, url, {"X-API-Key": "wrong"})
        assert status == 403
        assert body["error"] == "forbidden"
        for header in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            status, body = await call(method, url, header)
            # Past the key: without a Docker fleet the fleet's actions cannot apply, and there
            # is no such stream.
            assert status in (404, 409), body
            assert body["error"] in ("not_found", "conflict")


async def test_without_protect_reads_the_read_endpoints_are_open() -> None:
    async with gateway(settings(api_key=KEY)) as server:
        for path in READS:
            status, _ = await call("GET", f"http://127.0.0.1:{server.port}{path}")
            assert status == 200, path


@pytest.mark.parametrize("path", READS)
async def test_protect_reads_puts_the_reads_behind_the_key_but_not_the_probes(path: str) -> None:
    async with gateway(settings(api_key=KEY, protect_reads=True)) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert (await call("GET", base + path))[0] == 401
        assert (await call("GET", base + path, {"X-API-Key": "nope"}))[0] == 403
        assert (await call("GET", base + path, {"Authorization": f"Bearer {KEY}"}))[0] == 200
        assert (await call("GET", base + "/health"))[0] == 200
        assert (await call("GET", base + "/ready"))[0] == 200


async def test_stopping_a_stream_ends_its_players_and_stops_the_session_on_the_engine(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(api_key=KEY, stream_linger_s=60), engine) as server:
        base = f"http://127.0.0.1:{server.port}"
        players = [Player(stream_url(server)), Player(stream_url(server))]
        try:
            for player in players:
                await player.receives(188 * 100)
            _, listed = await call("GET", base + "/streams")
            key = listed[0]["key"]
            status, body = await call("DELETE", f"{base}/streams/{key}", {"X-API-Key": KEY})
            assert (status, body["stopped"], body["players"]) == (200, True, 2)
            for player in players:
                await wait_until(player.ended.is_set, timeout_s=10)

            async def stopped() -> bool:
                stats = await engine.stats()
                return bool(stats["sessions_stopped"] == 1 and stats["sessions_active"] == 0)

            await wait_until(stopped, timeout_s=10)
            assert (await call("GET", base + "/streams"))[1] == []
            _, metrics = await call("GET", base + "/metrics")
            assert 'acestream_gateway_player_drops_total{reason="stopped"} 2.0' in metrics
            status, body = await call("DELETE", f"{base}/streams/{key}", {"X-API-Key": KEY})
            assert status == 404
        finally:
            for player in players:
                await player.close()


async def test_every_action_is_logged_with_who_and_what(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        player = Player(stream_url(server))
        try:
            await player.receives(188 * 10)
            with capture_logs() as logs:
                await call("DELETE", f"http://127.0.0.1:{server.port}/streams/{CHANNEL}")
                await call("POST", f"http://127.0.0.1:{server.port}/fleet/reconcile")
        finally:
            await player.close()
    done = [e for e in logs if e["event"] == "management_action"]
    refused = [e for e in logs if e["event"] == "management_action_refused"]
    assert done[0]["action"] == "stop_stream"
    assert done[0]["peer"] == "127.0.0.1"
    assert CHANNEL in done[0]["target"]
    assert refused[0]["action"] == "reconcile"
    assert refused[0]["status"] == 409
