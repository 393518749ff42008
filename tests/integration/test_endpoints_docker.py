"""The fleet over two Docker endpoints for real: the machine's daemon and a second, test-owned
host spoken to over TCP with TLS, its engines on an address of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.fleet.docker import DockerEngines, docker_client
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.http.keys import POOL, RECONCILER, REGISTRY
from acestream_gateway.settings import Settings
from tests.equipment.second_daemon import DockerDaemon
from tests.equipment.tls_files import new_authority
from tests.support import (
    Player,
    containers_of,
    emulator_fleet_settings,
    free_port_range,
    wait_until,
)
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker


def two_endpoints(
    instance: str, far: dict[str, Any], *, local_max: int = 2, **values: Any
) -> Settings:
    lo, hi = free_port_range(4)
    here = {"name": "here", "url": "unix:///var/run/docker.sock", "ports": f"{lo}-{hi}"}
    return emulator_fleet_settings(
        instance,
        4,
        **{
            "docker_endpoints": json.dumps([{**here, "max_engines": local_max}, far]),
            "engine_env": {"EMULATOR_PREBUFFER_S": "0"},
            "max_active_replicas": 4,
            "docker_timeout_s": 10,
            "engine_startup_timeout_s": 30,
            **values,
        },
    )


@asynccontextmanager
async def fleet(settings: Settings) -> AsyncIterator[tuple[Reconciler, EnginePool]]:
    pool = EnginePool(
        max_streams_per_engine=settings.max_streams_per_engine,
        max_engines=settings.max_active_replicas,
        provision_wait_s=0.2,
    )
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        dockers: dict[str, DockerEngines] = {}
        for endpoint in settings.endpoints():
            opened = docker_client(endpoint.url, settings.docker_timeout_s, endpoint.tls)
            dockers[endpoint.name] = await stack.enter_async_context(opened)
        engines = EngineClient(http, api_timeout_s=2, stop_timeout_s=2)
        reconciler = Reconciler(settings=settings, dockers=dockers, pool=pool, client=engines)
        try:
            yield reconciler, pool
        finally:
            await reconciler.close()


def ready_on(pool: EnginePool, endpoint: str) -> int:
    return sum(
        1
        for x in pool.snapshot()
        if x.engine.endpoint == endpoint and x.engine.state is EngineState.READY
    )


def far_containers(daemon: DockerDaemon, instance: str) -> list[str]:
    listed = daemon.docker(
        "ps", "-aq", "--filter", f"label=acestream-gateway.instance={instance}"
    ).stdout.split()
    return sorted(listed)


async def test_engines_spread_over_both_endpoints_and_answer_where_they_run(
    instance: str, second_docker: DockerDaemon
) -> None:
    lo, hi = free_port_range(4)
    far = second_docker.endpoint("far", f"{lo}-{hi}", 2)
    settings = two_endpoints(instance, far, min_replicas=4)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_on(pool, "here") == 2, timeout_s=60)
        await wait_until(lambda: ready_on(pool, "far") == 2, timeout_s=60)
        far_engines = [e for e in pool.engines() if e.endpoint == "far"]
        assert {e.address.host for e in far_engines} == {second_docker.engine_host}
        assert len(containers_of(instance)) == 2
        assert len(far_containers(second_docker, instance)) == 2
        await reconciler.reconcile()  # nothing changes
        assert len(pool.engines()) == 4


async def test_max_active_replicas_holds_across_both_under_a_burst(
    instance: str, second_docker: DockerDaemon
) -> None:
    lo, hi = free_port_range(4)
    far = second_docker.endpoint("far", f"{lo}-{hi}", 4)
    settings = two_endpoints(instance, far, local_max=4, max_active_replicas=3)
    async with fleet(settings) as (reconciler, _):
        await reconciler.reconcile()  # as at start: both listed, MIN_REPLICAS started
        spares = len(containers_of(instance)) + len(far_containers(second_docker, instance))
        starts = [reconciler.actions.start_engine() for _ in range(9)]
        results = await asyncio.gather(*starts, return_exceptions=True)
        made = len(containers_of(instance)) + len(far_containers(second_docker, instance))
        assert made == 3, results
        assert sum(1 for r in results if not isinstance(r, BaseException)) == 3 - spares


async def test_a_wrong_client_certificate_names_the_endpoint_and_the_other_serves(
    instance: str, second_docker: DockerDaemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = new_authority(tmp_path, "stranger").client("gateway")
    lo, hi = free_port_range(4)
    far = {**second_docker.endpoint("far", f"{lo}-{hi}", 2), "tls": stranger.as_json()}
    settings = two_endpoints(instance, far, min_replicas=2)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()  # does not raise: "here" carries on
        [here, far_status] = reconciler.status().endpoints
        assert not far_status.reachable
        assert far_status.down_reason
        assert here.reachable
        await wait_until(lambda: ready_on(pool, "here") == 2, timeout_s=60)
        assert reconciler._pool.blocked() is None
    assert far_containers(second_docker, instance) == []


async def test_a_host_that_goes_away_and_returns_is_taken_back_without_duplicates(
    instance: str, second_docker: DockerDaemon
) -> None:
    lo, hi = free_port_range(4)
    far = second_docker.endpoint("far", f"{lo}-{hi}", 2)
    settings = two_endpoints(instance, far, min_replicas=2, local_max=1)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_on(pool, "far") == 1, timeout_s=60)
        second_docker.stop()
        try:
            await reconciler.reconcile()  # does not raise
            status = {s.name: s for s in reconciler.status().endpoints}
            assert not status["far"].reachable
            assert status["here"].reachable
            assert reconciler._pool.blocked() is None
        finally:
            second_docker.start()
        await reconciler.reconcile()
        await reconciler.reconcile()
        assert reconciler.status().endpoints[1].reachable
        ids = far_containers(second_docker, instance)
        running = second_docker.docker(
            "ps", "-q", "--filter", f"label=acestream-gateway.instance={instance}"
        ).stdout.split()
        far_held = reconciler.backends["far"].ports.held
        assert len(set(far_held)) == len(far_held.values())
        assert len(running) <= 1, "no duplicate engine on the returned host"
        assert {c[:12] for c in far_held.values()} <= {i[:12] for i in ids}


def ready_engines_on(server: TestServer, endpoint: str) -> int:
    return ready_on(server.app[POOL], endpoint)


async def test_a_lost_host_fails_its_channels_over_and_players_keep_playing(
    instance: str, second_docker: DockerDaemon
) -> None:
    lo, hi = free_port_range(4)
    far = second_docker.endpoint("far", f"{lo}-{hi}", 2)
    settings = two_endpoints(
        instance,
        far,
        min_replicas=2,
        max_streams_per_engine=1,
        engine_env={
            "EMULATOR_PREBUFFER_S": "0.3",
            "EMULATOR_BURST_BYTES": "500000",
            "EMULATOR_BITRATE_BPS": "2000000",
            "EMULATOR_KEYFRAME_INTERVAL_S": "1",
        },
        health_check_interval_s=1,
        health_probe_timeout_s=1,
        health_failure_threshold=2,
        engine_grace_period_s=600,
        keepalive_interval_s=0.2,
        stall_timeout_s=2,
        failover_backoff_s=0.2,
        provision_wait_s=30,
    )
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines_on(server, "far") >= 1, timeout_s=60)
        base = f"http://127.0.0.1:{server.port}/ace/getstream?id="
        players = {n: [Player(f"{base}{n:040x}"), Player(f"{base}{n:040x}")] for n in (1, 2)}
        for pair in players.values():
            for player in pair:
                await player.receives(188 * 500)
        # Two spares: the plan keeps MIN_REPLICAS=2 empty engines, spread over both hosts.
        await wait_until(lambda: ready_engines_on(server, "here") == 2, timeout_s=60)
        channels = server.app[REGISTRY].channels()
        on_far = [c for c in channels if c.claim is not None and c.claim.engine.endpoint == "far"]
        assert on_far, "a channel plays on the far host"
        lost = [p for c in on_far for p in players[int(c.content.value, 16)]]
        stopped_at = time.monotonic()
        await asyncio.to_thread(second_docker.stop)
        try:
            for player in lost:
                await player.receives(200_000, timeout_s=30)
            gaps = []
            for player in lost:
                resumed = player.first_real_data_after(stopped_at + 0.05)
                assert resumed is not None
                gaps.append(resumed - stopped_at)
                assert not player.ended.is_set(), "every player kept its connection"
            for channel in on_far:
                assert channel.claim is not None
                assert channel.claim.engine.endpoint == "here"
            status = {s.name: s for s in server.app[RECONCILER].status().endpoints}
            await wait_until(
                lambda: not server.app[RECONCILER].status().endpoints[1].reachable, timeout_s=30
            )
            assert status["here"].reachable
            print(
                f"players' gap when a whole endpoint is lost: median "
                f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s over {len(gaps)} players"
            )
            assert max(gaps) < 15, gaps
        finally:
            await asyncio.to_thread(second_docker.start)
            for pair in players.values():
                for player in pair:
                    await player.close()
