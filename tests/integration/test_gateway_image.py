"""The gateway as users ship it: a single container with the Docker socket mounted."""

from __future__ import annotations

import subprocess
import time

import aiohttp
import pytest

from tests.support import (
    CHANNEL,
    containers_of,
    emulator_image,
    ffprobe_streams,
    free_port,
    free_port_range,
    gateway_image,
    wait_until,
)

pytestmark = pytest.mark.docker


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()


async def test_the_gateway_container_runs_engines_through_the_mounted_docker_socket(
    instance: str,
) -> None:
    port = free_port()
    lo, hi = free_port_range(3)
    env = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_INSTANCE_NAME": instance,
        "ENGINE_IMAGE": emulator_image(),
        # The emulator image takes the engine command line itself.
        "ENGINE_PRESET": "custom",
        "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
        "ENGINE_ENV": '{"EMULATOR_BURST_BYTES": "2000000", "EMULATOR_PREBUFFER_S": "0.5"}',
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        "MAX_ACTIVE_REPLICAS": "3",
        "STREAM_LINGER_S": "0.5",
    }
    args = [f"--env={k}={v}" for k, v in env.items()]
    docker(
        "run",
        "--detach",
        f"--name=gateway-{instance}",
        "--network=host",
        "--volume=/var/run/docker.sock:/var/run/docker.sock",
        *args,
        gateway_image(),
    )
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(url + "/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(ready, timeout_s=90)
    except AssertionError:
        raise AssertionError(docker("logs", f"gateway-{instance}")[-3000:]) from None
    assert len(containers_of(instance)) == 1
    streams = await ffprobe_streams(f"{url}/ace/getstream?id={CHANNEL}")
    assert any(s["codec_name"] == "h264" for s in streams)
    # The dashboard's files are package data: the image carries them.
    async with aiohttp.ClientSession() as http:
        for path in ("/dashboard", "/dashboard/dashboard.js", "/dashboard/dashboard.css"):
            async with http.get(url + path) as resp:
                assert resp.status == 200, path

    started = time.monotonic()
    docker("stop", "--time=20", f"gateway-{instance}")
    assert time.monotonic() - started < 15
    assert docker("inspect", "--format={{.State.ExitCode}}", f"gateway-{instance}") == "0"
    logs = subprocess.run(
        ["docker", "logs", f"gateway-{instance}"], capture_output=True, text=True, check=True
    ).stderr
    assert '"event": "engine_session_stopped"' in logs
    assert '"event": "gateway_stopped"' in logs
