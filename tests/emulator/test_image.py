"""The emulator image under Docker: it starts with the gateway's engine command line, answers on
the published port, streams TS that ffprobe recognises, and stops promptly on SIGTERM."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support import emulator_image, ffprobe_streams, free_port, need_docker, need_ffprobe

from .helpers import CONTENT_ID, get_json

pytestmark = pytest.mark.docker

ENGINE_PORT = 6901


def docker(*args: str, timeout_s: float = 60) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=True
    )
    return result.stdout.strip()


def docker_logs(container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout + result.stderr


@pytest.fixture
def engine_url() -> Iterator[str]:
    """A running emulator container; removed afterwards whatever happened."""
    need_docker()
    need_ffprobe()
    image = emulator_image()
    host_port = free_port()
    container = docker(
        "run",
        "-d",
        "-p",
        f"127.0.0.1:{host_port}:{ENGINE_PORT}",
        "-e",
        "EMULATOR_PREBUFFER_S=0.5",
        "-e",
        "EMULATOR_BURST_BYTES=2000000",
        image,
        "--client-console",
        "--http-port",
        str(ENGINE_PORT),
        "--bind-all",
    )
    try:
        yield f"http://127.0.0.1:{host_port}"
    finally:
        subprocess.run(
            ["docker", "rm", "-f", container], capture_output=True, timeout=60, check=False
        )


async def wait_up(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with asyncio.timeout(30):
        while True:
            try:
                answer: dict[str, object] = await get_json(
                    http, url + "/webui/api/service?method=get_version"
                )
                return answer
            except (aiohttp.ClientError, AssertionError):
                await asyncio.sleep(0.2)


async def test_the_image_serves_the_engine_api_and_a_stream_ffprobe_recognises(
    engine_url: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        version = await wait_up(http, engine_url)
        assert version == {
            "result": {"code": 3020300, "platform": "linux", "version": "3.2.3"},
            "error": None,
        }
        url = engine_url + "/ace/getstream"
        answer = await get_json(http, url, params={"id": CONTENT_ID, "format": "json"})
        session = answer["response"]
        # URLs carry the Host the caller used: the published port, not the container's.
        assert session["playback_url"].startswith(engine_url + "/ace/r/")
        streams = await ffprobe_streams(session["playback_url"], timeout_s=60)
        assert [s["codec_name"] for s in streams] == ["h264"]
        stats = await get_json(http, engine_url + "/emulator/stats")
        assert stats["sessions_started"] == 1


def test_the_container_stops_promptly_on_docker_stop() -> None:
    need_docker()
    image = emulator_image()
    container = docker("run", "-d", image)
    try:
        deadline = time.monotonic() + 30
        while "engine_started" not in docker_logs(container) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        docker("stop", "-t", "10", container, timeout_s=30)
        assert time.monotonic() - started < 5
        state = docker("inspect", "-f", "{{.State.ExitCode}}", container)
        assert state == "0"
    finally:
        subprocess.run(
            ["docker", "rm", "-f", container], capture_output=True, timeout=60, check=False
        )
