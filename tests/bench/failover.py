"""The failover phase: a gateway with its real fleet of emulator engine containers, a few players
on one channel, and the channel's engine killed under them again and again.

Each run finds the engine carrying the channel (the one whose emulator counts an active session),
``docker kill``s it and times, per player, the gap from the kill to the first TS packet that is
not keep-alive; that packet should be the new session's PAT. The kill's moment is when the
command is issued: the engine dies within it, and the gateway's log shows by how much it saw
the end later. Only packets arriving after the command returned are looked at, so nothing the
old engine sent can pass for new data (a new session's first data takes at least the engine's
prebuffer). Before the next run the fleet must be whole again: the channel on one
engine and a ready spare beside it. Every container of the phase's gateway instance is removed at
the end, whatever happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from acestream_gateway.streaming.channel import FailoverPolicy
from tests.support import free_port, free_port_range, remove_containers_of

from . import fleetctl, timeline
from .engine import Stream
from .processes import Processes
from .tsplayer import Player, Resumption

ROOT = Path(__file__).resolve().parent.parent.parent
CONTENT_ID = hashlib.sha1(b"bench-failover", usedforsecurity=False).hexdigest()
_RESUME_TIMEOUT_S = 30.0


class FailoverFailed(RuntimeError):
    """A run did not resume every player, or the fleet never became whole again."""


@dataclass(frozen=True, slots=True)
class FailoverPlan:
    """What the phase measures, and the gateway and engines it measures on."""

    runs: int
    players: int
    stream: Stream
    keyframe_interval_s: float
    health_check_interval_s: float
    image: str
    # A session that streamed this long starts the channel's count of failover attempts over:
    # kills this far apart each meet a healthy channel, as one engine death among good ones does.
    spacing_s: float = FailoverPolicy().healthy_run_s + 1.0
    whole_timeout_s: float = 120.0

    def engine_env(self) -> dict[str, str]:
        return {**self.stream.env(), "EMULATOR_KEYFRAME_INTERVAL_S": str(self.keyframe_interval_s)}

    def gateway_env(self, instance: str, port: int) -> dict[str, str]:
        """The gateway as a user runs it; product defaults for everything not named here."""
        lo, hi = free_port_range(4)
        return {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_INSTANCE_NAME": instance,
            "ENGINE_IMAGE": self.image,
            "ENGINE_PRESET": "custom",  # the emulator image takes the engine command line itself
            "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
            "ENGINE_ENV": json.dumps(self.engine_env()),
            "MIN_REPLICAS": "1",
            "MAX_ACTIVE_REPLICAS": "3",
            "MAX_STREAMS_PER_ENGINE": "1",
            "PORT_RANGE_HOST": f"{lo}-{hi}",
            "HEALTH_CHECK_INTERVAL_S": f"{self.health_check_interval_s:g}",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "players": self.players,
            "bitrate_bps": self.stream.bitrate_bps,
            "burst_bytes": self.stream.burst_bytes,
            "prebuffer_s": self.stream.prebuffer_s,
            "keyframe_interval_s": self.keyframe_interval_s,
            "health_check_interval_s": self.health_check_interval_s,
            "spacing_s": self.spacing_s,
            "image": self.image,
            "gateway_defaults": timeline.gateway_defaults(),
        }


def run(plan: FailoverPlan, workdir: Path) -> dict[str, Any]:
    """The phase's raw figures; its gateway and containers are gone when this returns."""
    instance = f"bench-failover-{uuid.uuid4().hex[:8]}"
    procs = Processes(workdir)
    port = free_port()
    log_path = workdir / "gateway-failover.log"
    try:
        procs.start(
            "gateway-failover",
            [sys.executable, "-m", "acestream_gateway", "serve"],
            core=None,
            env={**os.environ, **plan.gateway_env(instance, port)},
            cwd=ROOT,
        )
        runs = asyncio.run(_measure(plan, f"http://127.0.0.1:{port}", instance))
    finally:
        procs.close()  # the gateway first, or it would replace the engines removed next
        remove_containers_of(instance)
    timeline.attach(runs, log_path)
    return {
        "instance": instance,
        **summarize(runs),
        "stages_ms_median": timeline.stage_medians(runs),
        "runs": runs,
    }


async def _measure(plan: FailoverPlan, url: str, instance: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        await _wait_ready(http, url, plan.whole_timeout_s)
        players = [
            Player(f"{url}/ace/getstream?id={CONTENT_ID}", f"player {n}")
            for n in range(plan.players)
        ]
        try:
            await _all_receive(players, 188 * 1000, "before the first kill")
            runs: list[dict[str, Any]] = []
            resumed_at = 0.0
            for number in range(1, plan.runs + 1):
                if runs:
                    await asyncio.sleep(max(0.0, resumed_at + plan.spacing_s - time.monotonic()))
                run, resumed_at = await _one_run(plan, http, url, instance, players, number)
                runs.append(run)
                print(f"bench: failover run {number}: {_gaps_text(run)}", flush=True)
            return runs
        finally:
            for player in players:
                await player.close()


async def _one_run(
    plan: FailoverPlan,
    http: aiohttp.ClientSession,
    url: str,
    instance: str,
    players: list[Player],
    number: int,
) -> tuple[dict[str, Any], float]:
    """One kill; its figures, and when the last player had new data."""
    waited = time.monotonic()
    victim = await fleetctl.wait_whole(http, url, instance, plan.whole_timeout_s)
    whole_s = time.monotonic() - waited
    await _all_receive(players, 188 * 100, f"before kill {number}")
    wall, started = time.time(), time.monotonic()
    await fleetctl.docker("kill", victim.id)
    killed = time.monotonic()
    watches = [player.watch(killed) for player in players]
    try:
        async with asyncio.timeout(_RESUME_TIMEOUT_S):
            resumed: list[Resumption | None] = list(await asyncio.gather(*watches))
    except TimeoutError:
        raise FailoverFailed(
            f"run {number}: not every player got new data within {_RESUME_TIMEOUT_S:g} s"
        ) from None
    lost = [n for n, r in enumerate(resumed) if r is None]
    if lost:
        raise FailoverFailed(f"run {number}: the stream of player(s) {lost} ended")
    got = [r for r in resumed if r is not None]
    figures = {
        "run": number,
        "engine": victim.name,
        "fleet_whole_before_s": round(whole_s, 2),
        "kill_command_ms": _ms(killed - started),
        "killed_at_unix": wall,
        "gaps_ms": [_ms(r.at - started) for r in got],
        "first_pids": [r.pid for r in got],
        "on_packet_boundary": [r.sync for r in got],
        "keepalive_packets": [r.keepalive_packets for r in got],
    }
    return figures, max(r.at for r in got)


async def _wait_ready(http: aiohttp.ClientSession, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await fleetctl.readiness(http, url) is None:
        if time.monotonic() > deadline:
            raise FailoverFailed(f"the gateway had no ready engine within {timeout_s:g} s")
        await asyncio.sleep(0.25)


async def _all_receive(players: list[Player], size: int, when: str) -> None:
    results = await asyncio.gather(*(p.receives(size, timeout_s=30) for p in players))
    if not all(results):
        stuck = [n for n, ok in enumerate(results) if not ok]
        errors = [players[n].error for n in stuck]
        raise FailoverFailed(f"player(s) {stuck} received no data {when}: {errors}")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _gaps_text(run: dict[str, Any]) -> str:
    return ", ".join(f"{gap:.0f} ms" for gap in run["gaps_ms"])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Gap statistics over every run and player, and how the resumptions began."""
    gaps = sorted(gap for run in runs for gap in run["gaps_ms"])
    pids = [pid for run in runs for pid in run["first_pids"]]
    boundary = [ok for run in runs for ok in run["on_packet_boundary"]]
    return {
        "gaps_ms": {
            "count": len(gaps),
            "median": round(statistics.median(gaps), 1) if gaps else None,
            "p90": percentile(gaps, 0.9) if len(gaps) >= 10 else None,
            "max": max(gaps, default=None),
            "min": min(gaps, default=None),
        },
        "resumptions": len(pids),
        "resumed_with_pat": pids.count(0),
        "resumed_on_packet_boundary": sum(boundary),
    }


def percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted figures."""
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]
