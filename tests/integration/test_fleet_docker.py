"""The fleet reconciler in-process against the real Docker daemon and the emulator image."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import EnginePool, NoCapacity
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.docker import UNREACHABLE, FleetError, docker_client
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.settings import Settings
from tests.support import containers_of, emulator_fleet_settings, wait_until

pytestmark = pytest.mark.docker


def fleet_settings(instance: str, **overrides: Any) -> Settings:
    return emulator_fleet_settings(
        instance,
        4,
        **{
            "engine_env": {"EMULATOR_PREBUFFER_S": "0"},
            "max_active_replicas": 4,
            "provision_wait_s": 0.2,
            "docker_timeout_s": 20,
            **overrides,
        },
    )


@asynccontextmanager
async def fleet(
    settings: Settings, docker_url: str | None = None
) -> AsyncIterator[tuple[Reconciler, EnginePool]]:
    pool = EnginePool(
        max_streams_per_engine=settings.max_streams_per_engine,
        max_engines=settings.max_active_replicas,
        provision_wait_s=settings.provision_wait_s,
        failure_threshold=settings.health_failure_threshold,
    )
    async with aiohttp.ClientSession() as http, docker_client(docker_url, 10) as docker:
        client = EngineClient(http, api_timeout_s=2, stop_timeout_s=2)
        reconciler = Reconciler(settings=settings, docker=docker, pool=pool, client=client)
        try:
            yield reconciler, pool
        finally:
            await reconciler.close()


def ready_count(pool: EnginePool) -> int:
    return sum(1 for x in pool.snapshot() if x.engine.state is EngineState.READY)


async def test_a_pass_starts_the_spares_and_a_second_pass_changes_nothing(instance: str) -> None:
    settings = fleet_settings(instance, min_replicas=2)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
        await reconciler.reconcile()
        containers = containers_of(instance)
        assert len(containers) == 2
        ports = sorted(int(c["Config"]["Labels"]["acestream-gateway.port"]) for c in containers)
        assert ports == [settings.port_range_host.lo, settings.port_range_host.lo + 1]
        assert sorted(reconciler.ports.held) == ports
        capacity = pool.capacity()
        assert (capacity.total, capacity.used, capacity.available) == (2, 0, 2)


async def test_a_restarted_gateway_adopts_every_engine_and_holds_each_port_once(
    instance: str,
) -> None:
    settings = fleet_settings(instance, min_replicas=2)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
        before = dict(reconciler.ports.held)
    async with fleet(settings) as (adopter, pool):
        await adopter.reconcile()
        await adopter.reconcile()
        await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
        assert adopter.ports.held == before
        assert len(containers_of(instance)) == 2


async def test_an_idle_surplus_engine_is_removed_after_the_grace_period(instance: str) -> None:
    grown = fleet_settings(instance, min_replicas=3)
    async with fleet(grown) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 3, timeout_s=30)
    shrunk = fleet_settings(
        instance,
        min_replicas=1,
        engine_grace_period_s=0,
        port_range_host=str(grown.port_range_host),
    )
    async with fleet(shrunk) as (reconciler, pool):
        await reconciler.reconcile()  # adopts three
        await wait_until(lambda: ready_count(pool) == 3, timeout_s=30)
        await reconciler.reconcile()  # two are surplus and idle past a zero grace period
        assert len(containers_of(instance)) == 1
        assert len(reconciler.ports.held) == 1


async def test_a_busy_engine_is_never_reaped_and_gets_a_spare_beside_it(instance: str) -> None:
    settings = fleet_settings(instance, min_replicas=1, engine_grace_period_s=0)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
        claim = await pool.claim("channel")
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
        await reconciler.reconcile()
        assert pool.get(claim.engine.id) is not None
        assert len(containers_of(instance)) == 2
        claim.release()


async def test_an_image_that_cannot_be_pulled_blocks_new_channels_with_the_reason(
    instance: str,
) -> None:
    settings = fleet_settings(instance, engine_image="acestream-gateway/missing:0")
    async with fleet(settings) as (reconciler, pool):
        with pytest.raises(FleetError):
            await reconciler.reconcile()
        block = pool.provisioning.current()
        assert block is not None
        assert block.reason is BlockedReason.IMAGE_UNAVAILABLE
        assert block.message.startswith("cannot provision engines")
        with pytest.raises(NoCapacity) as refused:
            await pool.claim("channel")
        assert refused.value.reason == block.message
        assert refused.value.code is BlockedReason.IMAGE_UNAVAILABLE
        assert containers_of(instance) == []


async def test_an_unreachable_docker_is_a_fleet_error_and_the_loop_keeps_trying(
    instance: str,
) -> None:
    settings = fleet_settings(instance, health_check_interval_s=0.1)
    async with fleet(settings, docker_url="unix:///nonexistent/docker.sock") as (reconciler, _):
        with pytest.raises(FleetError) as failed:
            await reconciler.reconcile()
        assert failed.value.status == UNREACHABLE
        loop = asyncio.create_task(reconciler.run())
        await wait_until(lambda: reconciler.last_error is not None, timeout_s=5)
        await asyncio.sleep(1.5)  # backoff: 1 s, then 2 s
        assert not loop.done(), "a Docker outage must not end the reconciler"
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
