"""Endurance: the gateway SIGKILLed five times while players start channels, restarted each time
with the same instance and state directory, against the real daemon and the emulator image.

The engine ends a session nobody reads only after its own idle timeout (ten minutes here), so
every session a killed gateway left stays live unless the next start ends it. Every engine's
live sessions are sampled throughout (the emulator's ``/emulator/stats``): no sample may show
more than ``MAX_STREAMS_PER_ENGINE`` sessions on one engine (rule 2, through crashes: rule 5),
and 30 s after the last restart no session may be left at all (nobody plays any more).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import (
    GatewayProcess,
    Player,
    containers_of,
    emulator_gateway_env,
    wait_until,
)

pytestmark = pytest.mark.docker

MAX_STREAMS = 1
KILLS = 5
CHANNELS_PER_RUN = 2


@pytest.fixture
def gateway_env(instance: str) -> dict[str, str]:
    return emulator_gateway_env(
        instance,
        4,
        {
            "EMULATOR_BURST_BYTES": "500000",
            "EMULATOR_PREBUFFER_S": "0.5",
            "EMULATOR_IDLE_TIMEOUT_S": "600",
        },
        MIN_REPLICAS="1",
        MAX_ACTIVE_REPLICAS="3",
        MAX_STREAMS_PER_ENGINE=str(MAX_STREAMS),
        ENGINE_GRACE_PERIOD_S="600",
        STREAM_LINGER_S="0.5",
        HEALTH_CHECK_INTERVAL_S="1",
    )


class SessionSampler:
    """Every engine container's live sessions, sampled until cancelled; the most seen on each."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.most: dict[int, int] = {}
        self.samples = 0

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                ports = await asyncio.to_thread(self._ports)
                for _ in range(10):
                    await self.sample(http, ports)
                    await asyncio.sleep(0.1)

    async def sample(self, http: aiohttp.ClientSession, ports: list[int]) -> dict[int, int]:
        counts = {}
        for port in ports:
            stats = await _stats(http, port)
            if stats is not None:
                counts[port] = int(stats["sessions_active"])
                self.most[port] = max(self.most.get(port, 0), counts[port])
        self.samples += 1
        return counts

    async def live_sessions(self) -> int:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            counts = await self.sample(http, await asyncio.to_thread(self._ports))
        return sum(counts.values())

    def _ports(self) -> list[int]:
        return [
            int(c["Config"]["Labels"]["acestream-gateway.port"])
            for c in containers_of(self.instance)
            if c["State"]["Running"]
        ]


async def _stats(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    """The emulator's counters, or None while it does not answer (starting, being removed)."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/emulator/stats") as resp:
            body: dict[str, Any] = await resp.json()
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


def channel(run: int, index: int) -> str:
    """A content id of its own per run and player: a new channel never supersedes a left one."""
    return f"{run:02x}{index:02x}" + "ab" * 18


async def play_then_kill(gateway: GatewayProcess, run: int, sampler: SessionSampler) -> None:
    """Players start channels; the gateway is killed once their sessions started (even runs) or
    while their starts are under way (odd runs)."""
    players = [
        Player(f"{gateway.url}/ace/getstream?id={channel(run, i)}") for i in range(CHANNELS_PER_RUN)
    ]
    try:
        if run % 2 == 0:
            await wait_until(lambda: _at_least(sampler, CHANNELS_PER_RUN), timeout_s=60)
        else:
            await asyncio.sleep(0.3)
    finally:
        gateway.stop(signals=(signal.SIGKILL,))
        for player in players:
            await player.close()


async def test_sessions_a_killed_gateway_left_are_ended_at_restart_never_stacked_with_new_ones(
    instance: str, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    sampler = SessionSampler(instance)
    sampling = asyncio.create_task(sampler.run())
    gateways: list[GatewayProcess] = []
    try:
        for run in range(KILLS):
            gateway = GatewayProcess(gateway_env, tmp_path / f"gateway-{run}.log")
            gateways.append(gateway)
            gateway.start()
            await gateway.wait_ready()
            await play_then_kill(gateway, run, sampler)
        last = GatewayProcess(gateway_env, tmp_path / "gateway-last.log")
        gateways.append(last)
        last.start()
        await last.wait_ready()
        with contextlib.suppress(AssertionError):  # judged below, with the per-engine maxima
            await wait_until(lambda: _none_left(sampler), timeout_s=30, interval_s=0.5)
        left = await sampler.live_sessions()
        errors = last.errors()
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        for gateway in gateways:
            gateway.stop(signals=(signal.SIGKILL,))
    assert sampler.samples > 50
    assert sampler.most, "no engine was ever sampled"
    assert max(sampler.most.values()) <= MAX_STREAMS, (
        f"sessions per engine, at most: {sampler.most}"
    )
    assert left == 0, f"{left} sessions left live 30 s after the last restart"
    assert not errors


async def _none_left(sampler: SessionSampler) -> bool:
    return await sampler.live_sessions() == 0


async def _at_least(sampler: SessionSampler, sessions: int) -> bool:
    return await sampler.live_sessions() >= sessions


@pytest.mark.parametrize("journal", ["missing", "corrupt"])
async def test_engines_found_without_a_usable_journal_are_replaced_not_used(
    instance: str, gateway_env: dict[str, str], tmp_path: Path, state_dir: Path, journal: str
) -> None:
    first = GatewayProcess(gateway_env, tmp_path / "gateway-first.log")
    players: list[Player] = []
    try:
        first.start()
        await first.wait_ready()
        players.append(Player(f"{first.url}/ace/getstream?id={channel(0, 0)}"))
        await wait_until(lambda: _at_least(SessionSampler(instance), 1), timeout_s=60)
    finally:
        first.stop(signals=(signal.SIGKILL,))
        for player in players:
            await player.close()
    path = state_dir / f"sessions-{instance}.json"
    if journal == "missing":
        path.unlink()
    else:
        path.write_text('{"format": 1, "sessions": [')
    found = {c["Id"] for c in containers_of(instance)}
    running = [c for c in containers_of(instance) if c["State"]["Running"]]

    second = GatewayProcess(gateway_env, tmp_path / "gateway-second.log")
    try:
        second.start()
        await second.wait_ready()
        # Every engine found was taken out of selection and removed; the fleet is made anew.
        await wait_until(lambda: not found & {c["Id"] for c in containers_of(instance)}, 30)
        assert await SessionSampler(instance).live_sessions() == 0
        names = second.event_names()
        assert names.count("engine_sessions_unaccounted") == len(running)
        assert ("session_journal_unreadable" in names) == (journal == "corrupt")
    finally:
        second.stop()
