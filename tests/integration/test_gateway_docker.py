"""End to end with a real Docker daemon, the emulator image and ffprobe as the player.

``acestream-gateway serve`` runs in a subprocess as a user would run it; the test looks at the
containers through the docker CLI and at the engine through the emulator's own counters.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import (
    CHANNEL,
    containers_of,
    emulator_gateway_env,
    ffprobe_streams,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def gateway_env(instance: str) -> dict[str, str]:
    return emulator_gateway_env(
        instance,
        4,
        {"EMULATOR_BURST_BYTES": "2000000", "EMULATOR_PREBUFFER_S": "0.5"},
        MIN_REPLICAS="1",
        MAX_ACTIVE_REPLICAS="3",
        MAX_STREAMS_PER_ENGINE="1",
        ENGINE_GRACE_PERIOD_S="600",
        STREAM_LINGER_S="0.5",
        HEALTH_CHECK_INTERVAL_S="1",
    )


def engine_port(container: dict[str, Any]) -> int:
    return int(container["Config"]["Labels"]["acestream-gateway.port"])


async def emulator_stats(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/emulator/stats") as resp:
            body: dict[str, Any] = await resp.json()
            return body


async def test_a_player_plays_through_an_engine_container_the_gateway_started_and_adopts(
    instance: str, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    async with running_gateway(gateway_env, tmp_path / "gateway.log") as gateway:
        # MIN_REPLICAS=1: exactly one engine, labelled as ours, its port published on 127.0.0.1.
        (container,) = containers_of(instance)
        labels = container["Config"]["Labels"]
        assert labels["acestream-gateway.managed"] == "true"
        assert labels["acestream-gateway.instance"] == instance
        port = engine_port(container)
        lo, hi = map(int, gateway_env["PORT_RANGE_HOST"].split("-"))
        assert lo <= port <= hi
        bindings = container["HostConfig"]["PortBindings"][f"{port}/tcp"]
        assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        assert container["State"]["Running"]

        # A real player reads the stream through the gateway.
        streams = await ffprobe_streams(f"{gateway.url}/ace/getstream?id={CHANNEL}&pid=42")
        assert any(s["codec_type"] == "video" and s["codec_name"] == "h264" for s in streams)

        # The player left: after the linger the engine session is stopped, nothing leaks.
        async def session_stopped() -> bool:
            stats = await emulator_stats(port)
            return bool(stats["sessions_active"] == 0 and stats["sessions_stopped"] >= 1)

        await wait_until(session_stopped, timeout_s=20)
        stats = await emulator_stats(port)
        assert stats["sessions_started"] == 1
        assert stats["max_concurrent_readers"] == 1

        # While the only engine was busy a spare was started (MIN_REPLICAS counts empty ones).
        assert len(containers_of(instance)) == 2
        before = {c["Id"] for c in containers_of(instance)}
        assert gateway.stop() < 15, "shutdown must be prompt"
        assert gateway.proc is not None
        assert gateway.proc.returncode == 0

        # Engines outlive the gateway; a new gateway adopts them: not duplicated, not wiped.
        assert {c["Id"] for c in containers_of(instance) if c["State"]["Running"]} == before
        async with running_gateway(gateway_env, tmp_path / "gateway-again.log") as again:
            await wait_until(lambda: again.event_names().count("engine_adopted") == 2, 30)
            await wait_until(lambda: "fleet_adopted" in again.event_names(), 30)
            assert {c["Id"] for c in containers_of(instance)} == before
            assert "engine_started" not in again.event_names()
            streams = await ffprobe_streams(f"{again.url}/ace/getstream?id={CHANNEL}")
            assert any(s["codec_name"] == "h264" for s in streams)


async def test_exited_engine_containers_are_removed_on_start(
    instance: str, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    async with running_gateway(gateway_env, tmp_path / "gateway.log"):
        (first,) = containers_of(instance)
    subprocess.run(["docker", "stop", "-t", "2", first["Id"]], check=True, capture_output=True)
    async with running_gateway(gateway_env, tmp_path / "again.log"):
        running = containers_of(instance)
        assert first["Id"] not in {c["Id"] for c in running}
        assert len(running) == 1
        assert running[0]["State"]["Running"]


async def test_shutdown_with_a_player_attached_is_prompt_clean_and_stops_the_engine_session(
    instance: str, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    async with running_gateway(
        {**gateway_env, "STREAM_LINGER_S": "60"}, tmp_path / "gw.log"
    ) as gateway:
        (container,) = containers_of(instance)
        port = engine_port(container)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.url}/ace/getstream?id={CHANNEL}") as resp:
                assert resp.status == 200
                await resp.content.readexactly(188 * 1000)
                assert (await emulator_stats(port))["sessions_active"] == 1
                # Ctrl-C then a SIGTERM while shutting down: one orderly shutdown.
                took = gateway.stop(signals=(signal.SIGINT, signal.SIGTERM))
                assert took < 8, f"shutdown took {took:.1f} s with a player attached"
                assert gateway.proc is not None
                assert gateway.proc.returncode == 0
                assert gateway.errors() == []
                assert "signal_ignored_during_shutdown" in gateway.event_names()
                rest = await resp.content.read()  # the stream ends instead of hanging
                assert isinstance(rest, bytes)
        stats = await emulator_stats(port)
        assert stats["sessions_active"] == 0
        assert stats["sessions_stopped"] == 1


async def test_a_dead_engine_container_is_removed_and_replaced(
    instance: str, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    async with running_gateway(gateway_env, tmp_path / "gw.log") as gateway:
        (first,) = containers_of(instance)
        subprocess.run(["docker", "kill", first["Id"]], check=True, capture_output=True)

        def replaced() -> bool:
            running = [c for c in containers_of(instance) if c["State"]["Running"]]
            ids = {c["Id"] for c in containers_of(instance)}
            return len(running) == 1 and first["Id"] not in ids

        await wait_until(replaced, timeout_s=30)
        await gateway.wait_ready()
        assert "engine_gone" in gateway.event_names()
        # The dead engine's port went back to the range and was reused: one port per engine.
        (second,) = containers_of(instance)
        assert engine_port(second) == engine_port(first)


async def test_a_host_port_taken_by_another_process_is_skipped(
    instance: str, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    lo = int(gateway_env["PORT_RANGE_HOST"].split("-")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", lo))
        squatter.listen()
        async with running_gateway(gateway_env, tmp_path / "gw.log") as gateway:
            (container,) = [c for c in containers_of(instance) if c["State"]["Running"]]
            assert engine_port(container) == lo + 1
            assert "engine_port_unusable" in gateway.event_names()
