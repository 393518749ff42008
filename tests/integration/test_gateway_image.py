"""The gateway as users ship it: the image of deploy/Dockerfile run as a container with the Docker
socket mounted, starting emulator engines through it, and looked at only from outside: a player
(ffprobe) plays through it, operators' endpoints answer, Docker reports it healthy."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

SOCKET = "/var/run/docker.sock"
GATEWAY_UID = 10001  # the image's user `gateway` (deploy/Dockerfile)
# What deploy/compose.yaml asks of Docker for the gateway container.
AS_IN_COMPOSE = (
    f"--volume={SOCKET}:{SOCKET}",
    "--cap-drop=ALL",
    "--cap-add=SETUID",
    "--cap-add=SETGID",
    "--security-opt=no-new-privileges:true",
)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout.strip()


def engine_env(instance: str) -> dict[str, str]:
    """Emulator engines in place of the real image; the emulator image takes the engine command
    line itself."""
    lo, hi = free_port_range(3)
    return {
        "GATEWAY_INSTANCE_NAME": instance,
        "ENGINE_IMAGE": emulator_image(),
        "ENGINE_PRESET": "custom",
        "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
        "ENGINE_ENV": '{"EMULATOR_BURST_BYTES": "2000000", "EMULATOR_PREBUFFER_S": "0.5"}',
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        "MAX_ACTIVE_REPLICAS": "3",
        "STREAM_LINGER_S": "0.5",
    }


def run_gateway(instance: str, env: dict[str, str], *options: str) -> str:
    """Start the gateway image as container ``gateway-<instance>`` (removed by the fixture)."""
    name = f"gateway-{instance}"
    envs = [f"--env={k}={v}" for k, v in env.items()]
    docker("run", "--detach", f"--name={name}", *options, *envs, gateway_image())
    return name


def logs(name: str) -> str:
    result = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout + result.stderr


async def wait_ready(name: str, url: str, timeout_s: float = 90) -> None:
    """Until a new channel would be placed now (``/ready`` is 200 already while the fleet can
    still grow: an engine must also be up)."""

    async def ready() -> bool:
        answer = await scrape(url, "/ready")
        return answer.status == 200 and bool(answer.json().get("can_place_now"))

    try:
        await wait_until(ready, timeout_s=timeout_s)
    except AssertionError:
        raise AssertionError(logs(name)[-3000:]) from None


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


async def scrape(url: str, path: str) -> Answer:
    """``GET url + path`` from outside the container; status 0 when nothing answers."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url + path) as resp:
            return Answer(resp.status, resp.content_type, await resp.text())
    except aiohttp.ClientError:
        return Answer(0, "", "")


async def scrape_operator_endpoints(url: str, *paths: str) -> dict[str, Answer]:
    """What an operator's monitoring reads from the running container, by path."""
    return {path: await scrape(url, path) for path in paths}


def process_status(name: str) -> dict[str, str]:
    """``/proc/<pid>/status`` of the container's main process, read on the host."""
    pid = docker("inspect", "--format={{.State.Pid}}", name)
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def health(name: str) -> str:
    return docker("inspect", "--format={{.State.Health.Status}}", name)


async def test_the_gateway_container_plays_answers_operators_and_reports_healthy(
    instance: str,
) -> None:
    port = free_port()
    env = {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), **engine_env(instance)}
    name = run_gateway(instance, env, "--network=host", *AS_IN_COMPOSE)
    url = f"http://127.0.0.1:{port}"
    await wait_ready(name, url)
    assert len(containers_of(instance)) == 1

    streams = await ffprobe_streams(f"{url}/ace/getstream?id={CHANNEL}")
    assert any(s["codec_name"] == "h264" for s in streams)
    # The dashboard's files are package data: the image carries them.
    async with aiohttp.ClientSession() as http:
        for path in ("/dashboard", "/dashboard/dashboard.js", "/dashboard/dashboard.css"):
            async with http.get(url + path) as resp:
                assert resp.status == 200, path

    answers = await scrape_operator_endpoints(
        url, "/health", "/ready", "/orchestrator/status", "/metrics"
    )
    assert answers["/health"].status == 200
    assert answers["/health"].json() == {"status": "ok"}
    assert answers["/ready"].status == 200
    assert answers["/ready"].json()["ready"] is True
    status_body = answers["/orchestrator/status"].json()
    assert answers["/orchestrator/status"].status == 200
    assert status_body["engines"]["total"] >= 1
    assert status_body["capacity"]["used"] <= status_body["capacity"]["total"]
    assert status_body["provisioning"]["can_provision"] is True
    metrics = answers["/metrics"]
    assert metrics.status == 200
    assert metrics.content_type == "text/plain"
    assert "acestream_gateway_engine_session_starts_total 1.0" in metrics.text

    status = process_status(name)
    assert status["Uid"].split() == [str(GATEWAY_UID)] * 4
    assert str(os.stat(SOCKET).st_gid) in status["Groups"].split()
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    assert "gateway-entrypoint" not in logs(name)  # nothing to warn about
    await wait_until(lambda: health(name) == "healthy", timeout_s=60, interval_s=1)

    started = time.monotonic()
    docker("stop", "--time=20", name)
    assert time.monotonic() - started < 15
    assert docker("inspect", "--format={{.State.ExitCode}}", name) == "0"
    assert '"event": "engine_session_stopped"' in logs(name)
    assert '"event": "gateway_stopped"' in logs(name)


async def test_a_container_started_as_a_chosen_user_uses_the_socket_through_group_add(
    instance: str,
) -> None:
    port = free_port()
    gid = os.stat(SOCKET).st_gid
    env = {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), **engine_env(instance)}
    user = f"--user={GATEWAY_UID}:{GATEWAY_UID}"
    name = run_gateway(instance, env, "--network=host", user, f"--group-add={gid}", *AS_IN_COMPOSE)
    await wait_ready(name, f"http://127.0.0.1:{port}")
    assert len(containers_of(instance)) == 1
    assert process_status(name)["Uid"].split() == [str(GATEWAY_UID)] * 4
    assert "gateway-entrypoint" not in logs(name)


async def test_a_chosen_user_without_the_socket_group_is_told_which_group_to_add(
    instance: str,
) -> None:
    gid = os.stat(SOCKET).st_gid
    env = {"GATEWAY_PORT": str(free_port()), **engine_env(instance)}
    name = run_gateway(instance, env, "--network=host", f"--user={GATEWAY_UID}", *AS_IN_COMPOSE)
    await wait_until(lambda: "gateway-entrypoint" in logs(name), timeout_s=30)
    assert f"add --group-add {gid} (compose: group_add)" in logs(name)
    assert containers_of(instance) == []


def bridge_address() -> str:
    """The host's address on Docker's default bridge (docker0), which containers reach."""
    out = subprocess.run(
        ["ip", "-4", "-o", "address", "show", "dev", "docker0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.split()
    return out[out.index("inet") + 1].split("/")[0]


async def test_the_gateway_container_plays_on_a_bridge_network_with_its_port_published(
    instance: str,
) -> None:
    port = free_port()
    env = {"ENGINE_HOST_ADDRESS": bridge_address(), **engine_env(instance)}
    name = run_gateway(instance, env, f"--publish=127.0.0.1:{port}:8000", *AS_IN_COMPOSE)
    url = f"http://127.0.0.1:{port}"
    await wait_ready(name, url)
    streams = await ffprobe_streams(f"{url}/ace/getstream?id={CHANNEL}")
    assert any(s["codec_name"] == "h264" for s in streams)
    answers = await scrape_operator_endpoints(url, "/health", "/ready")
    assert [a.status for a in answers.values()] == [200, 200]
