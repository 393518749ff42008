"""A gateway that finds no Docker daemon at start keeps running and says so: it serves /health,
reports ``docker_unavailable`` and retries (README, "Docker outages"); a DOCKER_HOST the client
cannot use at all stops it at start with one line, never a traceback. No Docker is needed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiodocker.docker
import aiohttp
import pytest

from acestream_gateway.fleet import docker as fleet_docker
from acestream_gateway.fleet.docker import FleetError, docker_client
from tests.support import ROOT, GatewayProcess, free_port, wait_until


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_with_no_docker_socket_the_gateway_serves_health_and_reports_docker_unavailable(
    tmp_path: Path,
) -> None:
    env = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_INSTANCE_NAME": f"nodocker{os.getpid()}",
        "DOCKER_HOST": f"unix://{tmp_path}/nonexistent.sock",
    }
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    gateway.start()
    try:

        async def reports_docker_unavailable() -> bool:
            try:
                _, body = await get_json(gateway.url + "/orchestrator/status")
            except aiohttp.ClientError:
                return False
            details = body["provisioning"]["blocked_reason_details"] or {}
            return bool(details.get("code") == "docker_unavailable")

        await wait_until(reports_docker_unavailable, timeout_s=30)
        await asyncio.sleep(3)  # it stays up through its retries
        assert gateway.proc is not None
        assert gateway.proc.poll() is None
        assert (await get_json(gateway.url + "/health")) == (200, {"status": "ok"})
        status, body = await get_json(gateway.url + "/ready")
        assert status == 503
        assert body["ready"] is False
        assert "docker_unreachable" in gateway.event_names()
        assert gateway.errors() == []
    finally:
        gateway.stop()


async def test_with_no_docker_host_and_no_socket_found_the_client_is_made_and_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Docker context either
    monkeypatch.setattr(aiodocker.docker, "_sock_search_paths", [])
    monkeypatch.setattr(fleet_docker, "_DEFAULT_DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    async with docker_client(timeout_s=2) as docker:
        with pytest.raises(FleetError) as caught:
            await docker.ping()
        assert caught.value.unreachable


@pytest.mark.parametrize("host", ["garbage", "ftp://docker:2375"])
async def test_a_docker_host_the_client_cannot_use_is_a_typed_error_naming_it(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(FleetError) as caught:
        async with docker_client():
            pass
    assert "DOCKER_HOST" in caught.value.message
    assert not caught.value.unreachable


def test_a_docker_host_the_client_cannot_use_stops_the_gateway_with_one_line() -> None:
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "DOCKER_HOST": "garbage",
        "LOG_FORMAT": "json",
    }
    result = subprocess.run(
        [sys.executable, "-m", "acestream_gateway", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1
    assert "DOCKER_HOST" in lines[0]
