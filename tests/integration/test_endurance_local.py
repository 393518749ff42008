"""Endurance, seen from outside: ``acestream-gateway serve`` with ENGINE_URLS against engine
emulators running as local processes, so the memory and file descriptors measured are the
product's own.

- Rapid zapping: players hop between channels, some hanging up before their first byte. Once
  they stop, no engine session is left live on any engine, no claim in the pool, and the log
  holds no error.
- Churn soak: three channels of ten players, a player replaced every second or so and a channel
  replaced every few seconds. After a warm-up, the gateway's resident memory stays within 1 MiB
  of its level and its open file descriptors stay flat.

The suite runs short versions; ``ENDURANCE=long`` (``python -m tests.bench --endurance``) runs
the long ones: 10 minutes of churn at a player every 10 s and a channel every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.bench import procfs
from tests.integration.local import Emulator
from tests.integration.test_players_leaving_local import claims, sessions_on
from tests.integration.test_static_fleet_local import gateway_env
from tests.support import GatewayProcess, running_gateway, wait_until

LONG = os.environ.get("ENDURANCE", "") == "long"
MIB = 1024
# A slow stream: many players on two shared cores, and the figures are about what stays behind.
STREAM = {"prebuffer_s": "0.1", "burst_bytes": "188000", "bitrate_bps": "500000"}


def channel_id(n: int) -> str:
    return hashlib.sha1(f"endurance {n}".encode()).hexdigest()


@dataclass(frozen=True)
class Zapping:
    players: int = 6
    zaps: int = 40 if not LONG else 400
    channels: int = 8
    hang_up_share: float = 0.3  # of zaps that hang up before the first byte


@dataclass(frozen=True)
class Churn:
    channels: int = 3
    players: int = 10
    player_every_s: float = 1.0 if not LONG else 10.0
    channel_every_s: float = 6.0 if not LONG else 60.0
    warmup_s: float = 25.0 if not LONG else 120.0
    measured_s: float = 45.0 if not LONG else 600.0


async def started_engines(emulators: Callable[..., Emulator], count: int) -> list[Emulator]:
    engines = [emulators(**STREAM, json_delay_s="0.05") for _ in range(count)]
    for engine in engines:
        await engine.wait_up()
    return engines


async def watch(http: aiohttp.ClientSession, url: str, size: int | None) -> None:
    """One player: read ``size`` bytes then leave, or hang up before the first (None)."""
    async with http.get(url) as resp:
        if size is None:
            return  # the headers are not even read: the connection is dropped at once
        assert resp.status == 200, await resp.text()
        await resp.content.readexactly(size)


async def zapper(gateway: GatewayProcess, plan: Zapping, seed: int) -> None:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=30)
    for _ in range(plan.zaps):
        url = f"{gateway.url}/ace/getstream?id={channel_id(rng.randrange(plan.channels))}"
        # A session of its own per zap: a hang-up drops the connection, as a player does.
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if rng.random() < plan.hang_up_share:
                watching = asyncio.create_task(watch(http, url, 188 * 1000))
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            else:
                await watch(http, url, 188 * rng.randrange(10, 200))


async def test_rapid_zapping_leaves_no_session_no_claim_and_no_error(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    plan = Zapping()
    engines = await started_engines(emulators, 4)
    env = gateway_env(*engines, MAX_STREAMS_PER_ENGINE="4", STREAM_LINGER_S="0.5")
    async with running_gateway(env, tmp_path / "gateway.log") as gateway:
        await asyncio.gather(*(zapper(gateway, plan, seed) for seed in range(plan.players)))
        await wait_until(lambda: _all_gone(gateway, engines), timeout_s=10)
        names = gateway.event_names()
        assert names.count("player_left") >= plan.players  # hang-ups were seen as such
        assert gateway.errors() == []
        for engine in engines:
            stats = await engine.stats()
            assert stats["sessions_started"] == stats["sessions_stopped"], stats


async def _all_gone(gateway: GatewayProcess, engines: list[Emulator]) -> bool:
    return await claims(gateway) == 0 and await sessions_on(*engines) == 0


class Audience:
    """Players on channels, each replaced on a timer: channel by channel, player by player."""

    def __init__(self, gateway: GatewayProcess, http: aiohttp.ClientSession, plan: Churn) -> None:
        self._gateway = gateway
        self._http = http
        self._plan = plan
        self._opened = 0
        self._channels: list[tuple[str, list[asyncio.Task[None]]]] = []
        self.failures: list[BaseException] = []

    def open(self) -> None:
        self._channels = [self._channel() for _ in range(self._plan.channels)]

    def _channel(self) -> tuple[str, list[asyncio.Task[None]]]:
        url = f"{self._gateway.url}/ace/getstream?id={channel_id(self._opened)}"
        self._opened += 1
        return url, [asyncio.create_task(self._play(url)) for _ in range(self._plan.players)]

    async def _play(self, url: str) -> None:
        try:
            async with self._http.get(url) as resp:
                assert resp.status == 200, await resp.text()
                async for _ in resp.content.iter_any():
                    pass
        except (aiohttp.ClientError, AssertionError) as exc:
            self.failures.append(exc)

    def replace_player(self, index: int) -> None:
        url, players = self._channels[index % len(self._channels)]
        slot = (index // len(self._channels)) % len(players)
        players[slot].cancel()
        players[slot] = asyncio.create_task(self._play(url))

    def replace_channel(self, index: int) -> None:
        slot = index % len(self._channels)
        for task in self._channels[slot][1]:
            task.cancel()
        self._channels[slot] = self._channel()

    async def run(self, seconds: float) -> None:
        """Replace players and channels on their timers for ``seconds``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        next_player = loop.time() + self._plan.player_every_s
        next_channel = loop.time() + self._plan.channel_every_s
        players = channels = 0
        while (now := loop.time()) < end:
            if now >= next_player:
                self.replace_player(players)
                players += 1
                next_player += self._plan.player_every_s
            if now >= next_channel:
                self.replace_channel(channels)
                channels += 1
                next_channel += self._plan.channel_every_s
            await asyncio.sleep(max(0.0, min(next_player, next_channel, end) - loop.time()))

    async def close(self) -> None:
        tasks = [task for _, players in self._channels for task in players]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Sample:
    rss_kib: int
    fds: int


def sample(pid: int) -> Sample:
    return Sample(procfs.memory(pid).rss_kib, len(os.listdir(f"/proc/{pid}/fd")))


async def samples(pid: int, seconds: float, every_s: float = 1.0) -> list[Sample]:
    taken = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        taken.append(sample(pid))
        await asyncio.sleep(every_s)
    return taken


async def test_channel_churn_keeps_memory_and_file_descriptors_flat(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    plan = Churn()
    engines = await started_engines(emulators, 2)
    # asyncio's own loop allocates a fresh buffer for every socket read: the harder case for the
    # C heap, where an ended channel's memory stayed held (uvloop's reads grow it more slowly).
    env = gateway_env(
        *engines, MAX_STREAMS_PER_ENGINE="4", STREAM_LINGER_S="1", EVENT_LOOP="asyncio"
    )
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=30)) as http,
    ):
        assert gateway.proc is not None
        pid = gateway.proc.pid
        audience = Audience(gateway, http, plan)
        audience.open()
        try:
            await audience.run(plan.warmup_s)
            window_s = max(5.0, plan.channel_every_s)
            runner = asyncio.create_task(audience.run(plan.measured_s))
            early = await samples(pid, window_s)
            await asyncio.sleep(max(0.0, plan.measured_s - 2 * window_s))
            late = await samples(pid, window_s)
            await runner
        finally:
            await audience.close()
        assert audience.failures == []
        level = statistics.median(s.rss_kib for s in early)
        end = statistics.median(s.rss_kib for s in late)
        grown_kib = end - level
        print(f"rss after warm-up {level} KiB, at the end {end} KiB ({grown_kib:+} KiB)")
        assert grown_kib <= 1 * MIB
        # The same players and channels at any moment: as many descriptors between two
        # replacements. The floor of each window is compared: a sample taken while a channel is
        # replaced holds both its old and its new sockets (ten players each, sampled once a
        # second, so a window's peak depends on when it fell), while a leak raises the floor.
        early_fds, late_fds = min(s.fds for s in early), min(s.fds for s in late)
        print(f"descriptors between replacements: {early_fds} after warm-up, {late_fds} at the end")
        assert late_fds <= early_fds + 4
        assert gateway.errors() == []
