"""The gateway in-process with engine emulators as local processes: the equipment of the data
path's tests (the ``emulators`` fixture lives in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from acestream_gateway.app import create_app
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.http.keys import POOL
from acestream_gateway.settings import Settings
from tests.support import CHANNEL, ROOT, free_port, wait_until

OTHER = "0123456789abcdef0123456789abcdef01234567"


class Emulator:
    """The engine emulator as a local process on a loopback port."""

    def __init__(self, **knobs: str) -> None:
        self.port = free_port()
        env = {**os.environ, **{f"EMULATOR_{k.upper()}": v for k, v in knobs.items()}}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "acestream_gateway.emulator",
                "--client-console",
                "--http-port",
                str(self.port),
                "--bind-all",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_up(self) -> None:
        async def answers() -> bool:
            try:
                await self.get("/webui/api/service?method=get_version")
            except aiohttp.ClientError:
                return False
            return True

        await wait_until(answers, timeout_s=20, interval_s=0.1)

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as resp:
            return await resp.json(content_type=None)

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.get("/emulator/stats")
        return stats

    async def control(self, **knobs: object) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url + "/emulator/control", json=knobs) as resp:
                assert resp.status == 200, await resp.text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


FAST = {"prebuffer_s": "0", "burst_bytes": "376000", "bitrate_bps": "2000000"}


def settings(**overrides: object) -> Settings:
    values: dict[str, Any] = {
        "stream_linger_s": 0.2,
        "keepalive_interval_s": 0.2,
        "first_data_timeout_s": 10,
        "stall_timeout_s": 2,
        "provision_wait_s": 0.5,
        "max_streams_per_engine": 2,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def gateway(cfg: Settings, *emulators: Emulator) -> AsyncIterator[TestServer]:
    app = create_app(cfg, with_fleet=False)
    for index, emulator in enumerate(emulators):
        await emulator.wait_up()
        app[POOL].add(
            Engine(
                id=f"emu{index}",
                name=f"emulator-{index}",
                address=EngineAddress("127.0.0.1", emulator.port),
                state=EngineState.READY,
            )
        )
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def stream_url(server: TestServer, channel: str = CHANNEL, **extra: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"id": channel, **extra}.items())
    return f"http://127.0.0.1:{server.port}/ace/getstream?{query}"


async def read_some(
    url: str, size: int, timeout_s: float = 20
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(timeout_s), http.get(url) as resp:
            data = await resp.content.readexactly(size) if resp.status == 200 else b""
            return resp, data


def app_capacity(server: TestServer) -> dict[str, int]:
    capacity = server.app[POOL].capacity()
    return {"total": capacity.total, "used": capacity.used, "available": capacity.available}
