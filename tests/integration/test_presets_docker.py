"""Each ENGINE_PRESET against a stand-in of its image (the emulator behind that image's entrypoint
contract, deploy/standins/): a gateway told only the image and the preset starts engines that
become ready and play, and the old defaults never become ready with the default image."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import (
    CHANNEL,
    GatewayProcess,
    containers_of,
    emulator_image,
    ffprobe_streams,
    free_port,
    free_port_range,
    running_gateway,
    standin_image,
    wait_until,
)

pytestmark = pytest.mark.docker


def base_env(instance: str) -> dict[str, str]:
    """Where the gateway listens and how big its fleet is: nothing about the engine."""
    lo, hi = free_port_range(3)
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_INSTANCE_NAME": instance,
        "MIN_REPLICAS": "1",
        "MAX_ACTIVE_REPLICAS": "2",
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        "HEALTH_CHECK_INTERVAL_S": "1",
        "STREAM_LINGER_S": "0.5",
    }


def container_logs(container: dict[str, Any]) -> str:
    result = subprocess.run(
        ["docker", "logs", container["Id"]], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout + result.stderr


def started_line(container: dict[str, Any]) -> str:
    """The emulator's own account of the options its image's entrypoint gave it."""
    lines = [line for line in container_logs(container).splitlines() if "engine_started" in line]
    return lines[-1] if lines else ""


PRESET_ENVIRONMENTS = {
    # The default image's preset is the default: nothing but the image is set.
    "martinbjeldbak": lambda: {"ENGINE_IMAGE": standin_image("martinbjeldbak")},
    "krinkuto11": lambda: {
        "ENGINE_IMAGE": standin_image("krinkuto11"),
        "ENGINE_PRESET": "krinkuto11",
    },
    "jopsis": lambda: {"ENGINE_IMAGE": standin_image("jopsis"), "ENGINE_PRESET": "jopsis"},
    # The plain emulator image takes the engine command line, as images without a wrapper do.
    "custom": lambda: {
        "ENGINE_IMAGE": emulator_image(),
        "ENGINE_PRESET": "custom",
        "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
    },
}


@pytest.mark.parametrize("preset", sorted(PRESET_ENVIRONMENTS))
async def test_a_gateway_told_only_the_image_and_its_preset_plays_through_its_engines(
    instance: str, preset: str, tmp_path: Path
) -> None:
    env = {**base_env(instance), **PRESET_ENVIRONMENTS[preset]()}
    async with running_gateway(env, tmp_path / "gateway.log") as gateway:
        (container,) = containers_of(instance)
        port = int(container["Config"]["Labels"]["acestream-gateway.port"])
        # The engine listens where the gateway published it, open to the gateway's address.
        assert f"engine_started port={port} " in started_line(container)
        assert "bind_all=True" in started_line(container)
        streams = await ffprobe_streams(f"{gateway.url}/ace/getstream?id={CHANNEL}")
        assert "h264" in [s["codec_name"] for s in streams]
        assert "engine_ready" in gateway.event_names()
        assert gateway.errors() == []


async def test_the_default_image_with_the_old_defaults_never_becomes_ready(
    instance: str, tmp_path: Path
) -> None:
    # HTTP_PORT and BIND_ALL, no command: what the gateway used to give every engine.
    env = {
        **base_env(instance),
        "ENGINE_IMAGE": standin_image("martinbjeldbak"),
        "ENGINE_PRESET": "custom",
        "ENGINE_ENV": '{"HTTP_PORT": "{port}", "BIND_ALL": "true"}',
        "ENGINE_STARTUP_TIMEOUT_S": "5",
    }
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    gateway.start()
    try:
        seen: list[str] = []

        def engine_up_on_its_own_port() -> bool:
            seen[:] = [started_line(c) for c in containers_of(instance)]
            return any(line for line in seen)

        await wait_until(engine_up_on_its_own_port, timeout_s=30)
        # The image ignores HTTP_PORT: its engine is up, on 6878, and local-only.
        assert any("engine_started port=6878 " in line for line in seen), seen
        assert all("bind_all=False" in line for line in seen if line), seen
        await wait_until(lambda: "engine_start_timeout" in gateway.event_names(), timeout_s=30)
        deadline = time.monotonic() + 3
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(gateway.url + "/ready") as resp:
                    assert (await resp.json())["can_place_now"] is False
                await asyncio.sleep(0.2)
        assert "engine_ready" not in gateway.event_names()
    finally:
        gateway.stop()


@pytest.mark.parametrize("preset", ["martinbjeldbak", "jopsis"])
async def test_engine_args_reach_the_engine_after_the_preset_s_own(
    instance: str, preset: str, tmp_path: Path
) -> None:
    env = {
        **base_env(instance),
        "ENGINE_IMAGE": standin_image(preset),
        "ENGINE_PRESET": preset,
        "ENGINE_ARGS": "--emu-version 3.2.11",
    }
    async with running_gateway(env, tmp_path / "gateway.log"):
        (container,) = containers_of(instance)
        port = int(container["Config"]["Labels"]["acestream-gateway.port"])
        assert f"engine_started port={port} " in started_line(container)
        assert "version=3.2.11" in started_line(container)
