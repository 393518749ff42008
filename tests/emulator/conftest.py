"""Fixtures for the emulator's tests: emulators in-process on free loopback ports, and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from acestream_gateway.emulator.config import EngineOptions, Knobs
from acestream_gateway.emulator.server import Emulator

# Fast by default: no prebuffering, a small burst, a low bitrate.
FAST_KNOBS: dict[str, object] = {"prebuffer_s": 0, "burst_bytes": 188_000, "bitrate_bps": 2_000_000}

StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """Start emulators with knobs (``await start_emulator(stall_after_s=1)``); all stop after."""
    started: list[Emulator] = []

    async def start(*, bind_all: bool = True, **knobs: object) -> Emulator:
        options = EngineOptions(http_port=0, bind_all=bind_all, host="127.0.0.1", control_port=0)
        emulator = Emulator(options, Knobs().updated({**FAST_KNOBS, **knobs}))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.close()


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Live streams never finish: no total timeout, as a real caller would set it.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session
