"""Demand drives the fleet, and leaving engines make room: the gateway in-process with its real
fleet on the Docker daemon and the emulator image. A full fleet moves the players of an engine
whose health fails onto its replacement (removed first, then started: never a container over the
maximum), new channels arriving together get engines started together, and a first start on an
engine that cannot answer plays from another one."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest
import structlog
from structlog.testing import capture_logs

from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import choose_engine
from acestream_gateway.http.keys import POOL, REGISTRY
from tests.integration.test_failover_docker import (
    channel_id,
    engine_stats,
    fleet_settings,
    ready_engines,
)
from tests.integration.test_fleet_health_docker import control
from tests.support import Player, assert_resumes_cleanly, containers_of, wait_until
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker

HEALTH = {
    "health_check_interval_s": 0.5,
    "health_probe_timeout_s": 1.0,
    "health_failure_threshold": 3,
}


@contextmanager
def container_counts(instance: str) -> Iterator[list[int]]:
    """Samples, about every 0.1 s, of how many containers of the instance exist (any state)."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            listed = subprocess.run(
                [
                    "docker",
                    "ps",
                    "-aq",
                    "--filter",
                    f"label=acestream-gateway.instance={instance}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if listed.returncode == 0:
                samples.append(len(listed.stdout.split()))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, name="container count sampler", daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join(30)


def _docker_time(text: str) -> float:
    head, _, rest = text.partition(".")
    frac = rest.rstrip("Z").split("+")[0]
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


async def test_a_full_fleet_moves_the_players_of_an_engine_whose_health_fails_to_its_replacement(
    instance: str,
) -> None:
    # Three engines, three channels: the fleet is at its maximum and every engine is busy. One
    # engine's status probes turn slow while its stream flows (a false alarm, or the start of a
    # real failure): it is marked unhealthy, gives its place up, and its players carry on.
    size = 3
    settings = fleet_settings(instance, size, **HEALTH, provision_wait_s=60, stall_timeout_s=30)
    async with gateway(settings) as server:
        pool = server.app[POOL]
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=90)
        urls = [f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(n)}" for n in (1, 2)]
        players = [Player(urls[0])]
        await players[0].receives(188 * 500, timeout_s=60)
        players.append(Player(urls[1]))
        await players[1].receives(188 * 500, timeout_s=60)
        await wait_until(lambda: ready_engines(server) == size, timeout_s=90)
        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(3)}"
        players.append(Player(url))
        await players[2].receives(188 * 500, timeout_s=60)
        assert len(pool.engines()) == size
        channel = next(c for c in server.app[REGISTRY].channels() if channel_id(2) in c.content.key)
        assert channel.claim is not None
        suspect = channel.claim.engine
        player = players[1]
        with container_counts(instance) as counts:
            await control(suspect.address.port, api_delay_s="never")
            await wait_until(lambda: suspect.state is not EngineState.READY, timeout_s=30)
            failed_at = time.monotonic()
            await wait_until(lambda: pool.get(suspect.id) is None, timeout_s=60)
            removed_at = time.monotonic()
            await wait_until(
                lambda: channel.claim is not None and channel.claim.engine.id != suspect.id,
                timeout_s=90,
            )
            await player.receives(300_000, timeout_s=30)
            for other in players:
                await other.receives(188 * 100, timeout_s=30)
        resumed = player.first_real_data_after(removed_at)
        assert resumed is not None
        assert not player.ended.is_set(), "the player kept its connection"
        assert player.status == 200
        assert assert_resumes_cleanly(bytes(player.data), channel.meter.splices) >= 1
        assert counts, "the containers were sampled"
        assert max(counts) <= size, f"containers over MAX_ACTIVE_REPLICAS: {max(counts)}"
        assert suspect.id not in {c["Id"] for c in containers_of(instance)}
        assert channel.claim is not None
        new_home = channel.claim.engine
        assert (await engine_stats(new_home.address.port))["sessions_active"] == 1
        print(f"health failed -> replacement data: {resumed - failed_at:.2f} s")
        for each in players:
            await each.close()


async def test_new_channels_arriving_together_get_engines_started_together(
    instance: str,
) -> None:
    # Engines take a while to answer their first call; five channels arrive at once beside one
    # spare. The fleet starts engines for all the waiting channels at the same time, and no player
    # is refused while the fleet is below its maximum.
    settings = fleet_settings(
        instance,
        8,
        engine_env={
            "EMULATOR_PREBUFFER_S": "0.3",
            "EMULATOR_BITRATE_BPS": "2000000",
            "EMULATOR_BURST_BYTES": "200000",
            "EMULATOR_API_DELAY_S": "2",
        },
        health_probe_timeout_s=4,
        engine_api_timeout_s=6,
        provision_concurrency=4,
        provision_wait_s=12,
    )
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=90)
        before = {c["Id"] for c in containers_of(instance)}
        arrived = time.time()
        players = [
            Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(n)}")
            for n in range(1, 6)
        ]
        for player in players:
            await player.receives(188 * 100, timeout_s=60)
        assert [p.status for p in players] == [200] * 5, "no player was refused below MAX"
        new = [c for c in containers_of(instance) if c["Id"] not in before]
        created = sorted(_docker_time(c["Created"]) for c in new)
        assert len(created) >= 4
        first_batch = created[: settings.provision_concurrency]
        assert first_batch[-1] - first_batch[0] < 2.0, (
            f"engines for waiting channels were created one after another: "
            f"{[round(t - arrived, 2) for t in created]}"
        )
        for player in players:
            await player.close()


async def test_a_first_start_on_an_engine_that_hangs_plays_from_the_ready_spare(
    instance: str,
) -> None:
    # The engine a new channel is placed on hangs (its container frozen) before its health
    # probes could tell: the start times out, and the channel moves to the spare.
    settings = fleet_settings(
        instance, 4, min_replicas=2, health_check_interval_s=5, engine_api_timeout_s=2
    )
    async with gateway(settings) as server:
        pool = server.app[POOL]
        await wait_until(lambda: ready_engines(server) == 2, timeout_s=90)
        first = choose_engine(pool.engines(), {}, settings.max_streams_per_engine)
        assert first is not None
        subprocess.run(["docker", "pause", first.id], check=True, capture_output=True)
        try:
            with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
                url = f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(7)}"
                player = Player(url)
                await player.receives(188 * 500, timeout_s=60)
            assert player.status == 200
            failed = [e for e in logs if e["event"] == "engine_session_failed"]
            assert [e.get("engine") for e in failed] == [first.name], "the first start hit it"
            (channel,) = server.app[REGISTRY].channels()
            assert channel.claim is not None
            assert channel.claim.engine.id != first.id
            await player.close()
        finally:
            subprocess.run(["docker", "unpause", first.id], check=False, capture_output=True)
