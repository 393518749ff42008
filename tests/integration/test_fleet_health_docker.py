"""Failing engines and failing provisioning, against the real Docker daemon and the emulator image:
health probes, the provisioning breaker, concurrent growth and host ports that are busy a while."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool, NoCapacity
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.breaker import BreakerState
from acestream_gateway.fleet.docker import docker_client
from acestream_gateway.fleet.reconciler import Reconciler
from tests.equipment.docker_refusals import docker_proxy
from tests.integration.test_fleet_docker import fleet, fleet_settings, ready_count
from tests.support import containers_of, emulator_image, free_port_range, wait_until

pytestmark = pytest.mark.docker

FAST_HEALTH = {
    "health_check_interval_s": 0.3,
    "health_probe_timeout_s": 0.5,
    "health_failure_threshold": 3,
}


@asynccontextmanager
async def running(reconciler: Reconciler) -> AsyncIterator[None]:
    """The reconciler's loop (passes and health probes) for the length of the block."""
    loop = asyncio.create_task(reconciler.run(), name="reconciler under test")
    try:
        yield
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def control(port: int, **knobs: Any) -> None:
    """Turn an emulator knob on the engine published on ``port``."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/emulator/control", json=knobs) as answer,
    ):
        assert answer.status == 200, await answer.text()


def label_ports(instance: str) -> dict[str, int]:
    """Container id -> the port its label names, for every container of the instance."""
    return {
        c["Id"]: int(c["Config"]["Labels"]["acestream-gateway.port"])
        for c in containers_of(instance)
    }


def ports_as_planned(reconciler: Reconciler, instance: str) -> bool:
    """Each container holds exactly the port its label names, and nothing else is held."""
    return {p: c for c, p in label_ports(instance).items()} == reconciler.ports.held


@contextmanager
def image_tag(source: str, tag: str) -> Iterator[None]:
    subprocess.run(["docker", "tag", source, tag], check=True, capture_output=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True, timeout=60)


def broken_image(tag: str) -> str:
    """``tag``: the emulator image whose entrypoint exits at once, so its engines never answer;
    returns the image id (the tag may move on)."""
    created = subprocess.run(
        ["docker", "create", emulator_image()], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        return subprocess.run(
            ["docker", "commit", "--change", 'ENTRYPOINT ["false"]', created, tag],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    finally:
        subprocess.run(["docker", "rm", "-f", created], check=False, capture_output=True)


async def no_capacity(pool: EnginePool) -> NoCapacity:
    with pytest.raises(NoCapacity) as refused:
        await pool.claim(f"probe-{time.monotonic()}")
    return refused.value


# --- health of running engines --------------------------------------------------------------


async def test_an_engine_that_stops_answering_turns_unhealthy_takes_no_claim_and_is_replaced(
    instance: str,
) -> None:
    settings = fleet_settings(instance, min_replicas=1, provision_wait_s=20, **FAST_HEALTH)
    async with fleet(settings) as (reconciler, pool), running(reconciler):
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
        held = await pool.claim("channel-on-the-hung-engine")
        hung = held.engine
        await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)  # a spare beside it

        await control(hung.address.port, api_delay_s="never")
        # threshold x (interval + probe timeout), and a few seconds
        await wait_until(lambda: hung.state is EngineState.UNHEALTHY, timeout_s=3 * 0.8 + 3)
        assert held.lost.is_set(), "its channels are told to fail over"

        others = [await pool.claim(f"new-channel-{i}") for i in range(2)]
        assert all(c.engine.id != hung.id for c in others), "an unhealthy engine gets no claim"
        assert hung.id in label_ports(instance), "kept while its channel moves off"

        held.release()  # the data path moved the channel to another engine
        await wait_until(lambda: hung.id not in label_ports(instance), timeout_s=10)
        await wait_until(lambda: pool.get(hung.id) is None, timeout_s=5)
        await wait_until(lambda: ready_count(pool) >= 2, timeout_s=30)
        await wait_until(lambda: ports_as_planned(reconciler, instance), timeout_s=10)
        for claim in others:
            claim.release()


async def test_an_unhealthy_engine_that_keeps_its_channels_is_removed_after_its_wait(
    instance: str,
) -> None:
    settings = fleet_settings(instance, min_replicas=1, unhealthy_engine_timeout_s=1, **FAST_HEALTH)
    async with fleet(settings) as (reconciler, pool), running(reconciler):
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
        held = await pool.claim("stuck-channel")
        await control(held.engine.address.port, api_delay_s="never")
        await wait_until(lambda: held.engine.state is EngineState.UNHEALTHY, timeout_s=6)
        await wait_until(lambda: held.engine.id not in label_ports(instance), timeout_s=8)
        assert pool.get(held.engine.id) is None
        await wait_until(lambda: ports_as_planned(reconciler, instance), timeout_s=10)
        held.release()


async def test_a_crashed_readiness_probe_does_not_leave_an_engine_starting(
    instance: str,
) -> None:
    class CrashingClient(EngineClient):
        async def version(self, address: EngineAddress) -> str:
            raise RuntimeError("a bug in the probe")

    settings = fleet_settings(instance, min_replicas=1, circuit_breaker_failure_threshold=1)
    pool = EnginePool(max_streams_per_engine=2, max_engines=4, provision_wait_s=0.2)
    async with aiohttp.ClientSession() as http, docker_client(None, 10) as docker:
        client = CrashingClient(http, api_timeout_s=2, stop_timeout_s=2)
        reconciler = Reconciler(settings=settings, docker=docker, pool=pool, client=client)
        try:
            with capture_logs() as logs:
                await reconciler.reconcile()
                await wait_until(lambda: reconciler.breaker.openings == 1, timeout_s=5)
                await reconciler.reconcile()
            assert "engine_probe_crashed" in [e["event"] for e in logs]
            assert pool.engines() == [], "the engine that never became ready is removed"
            assert containers_of(instance) == []
            assert reconciler.ports.held == {}
        finally:
            await reconciler.close()


# --- the provisioning breaker ---------------------------------------------------------------


async def test_engines_that_cannot_start_open_the_breaker_which_backs_off_and_closes_once_fixed(
    instance: str,
) -> None:
    tag = f"acestream-gateway/test-broken-{instance}:1"
    broken = broken_image(tag)
    settings = fleet_settings(
        instance,
        engine_image=tag,
        min_replicas=1,
        provision_concurrency=1,
        health_check_interval_s=0.2,
        circuit_breaker_failure_threshold=2,
        circuit_breaker_recovery_timeout_s=2,
        circuit_breaker_max_backoff_s=8,
    )
    try:
        async with fleet(settings) as (reconciler, pool), running(reconciler):
            with capture_logs() as logs:
                await wait_until(lambda: reconciler.breaker.openings == 1, timeout_s=15)
                first = await no_capacity(pool)
                starts = sum(1 for e in logs if e["event"] == "engine_started")
                assert starts == 2, "the threshold of attempts, then no more"
                assert first.code is BlockedReason.CIRCUIT_BREAKER
                assert reconciler.status().breaker is BreakerState.OPEN

                await wait_until(lambda: reconciler.breaker.openings == 2, timeout_s=10)
                second = await no_capacity(pool)
                assert second.code is BlockedReason.CIRCUIT_BREAKER
                assert second.retry_after_s > first.retry_after_s, "it backs off"
                half_open = [e for e in logs if e["event"] == "provisioning_breaker_half_open"]
                assert [e["trial_engines"] for e in half_open] == [1]

            with image_tag(emulator_image(), tag):
                await wait_until(lambda: ready_count(pool) == 1, timeout_s=20)
                await wait_until(
                    lambda: reconciler.breaker.state is BreakerState.CLOSED, timeout_s=5
                )
                assert pool.provisioning.current() is None
                claim = await pool.claim("a-channel")
                claim.release()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, broken], check=False, capture_output=True)


async def test_an_engine_that_never_becomes_ready_is_removed_and_not_recreated_for_ever(
    instance: str,
) -> None:
    settings = fleet_settings(
        instance,
        min_replicas=1,
        engine_env={"EMULATOR_API_DELAY_S": "never"},
        engine_startup_timeout_s=1.5,
        health_check_interval_s=0.2,
        circuit_breaker_failure_threshold=2,
        circuit_breaker_recovery_timeout_s=60,
    )
    async with fleet(settings) as (reconciler, pool), running(reconciler):
        with capture_logs() as logs:
            await wait_until(lambda: reconciler.breaker.openings == 1, timeout_s=15)
            await asyncio.sleep(2)
        events = [e["event"] for e in logs]
        assert events.count("engine_started") == 2
        assert events.count("engine_start_timeout") == 2
        await wait_until(lambda: containers_of(instance) == [], timeout_s=5)
        refused = await no_capacity(pool)
        assert refused.code is BlockedReason.CIRCUIT_BREAKER
        assert refused.retry_after_s > 50


# --- growing fast, and ports --------------------------------------------------------------


def _docker_time(text: str) -> float:
    # Docker's RFC 3339 times carry nanoseconds; Python takes microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


async def test_a_fleet_that_must_grow_by_three_starts_them_at_the_same_time(instance: str) -> None:
    settings = fleet_settings(instance, min_replicas=3, provision_concurrency=3)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 3, timeout_s=30)
        containers = containers_of(instance)
        created = [_docker_time(c["Created"]) for c in containers]
        started = [_docker_time(c["State"]["StartedAt"]) for c in containers]
        assert max(created) < min(started), "each was created before any had started"
        ports = sorted(label_ports(instance).values())
        assert ports == list(range(settings.port_range_host.lo, settings.port_range_host.lo + 3))
        assert ports_as_planned(reconciler, instance)


async def test_a_range_of_exactly_max_ports_reaches_max_once_a_busy_port_is_free_again(
    instance: str,
) -> None:
    lo, hi = free_port_range(3)
    settings = fleet_settings(
        instance,
        min_replicas=3,
        max_active_replicas=3,
        port_range_host=f"{lo}-{hi}",
        port_recheck_s=1,
        health_check_interval_s=0.3,
    )
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", lo))
    squatter.listen()
    async with fleet(settings) as (reconciler, pool), running(reconciler):
        try:
            await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
            # The busy port carries no engine. (It may be held at this moment: each
            # PORT_RECHECK_S it is tried again, and a try holds it until Docker fails to bind.)
            assert all(e.address.port != lo for e in pool.engines())
            assert reconciler.breaker.state is BreakerState.CLOSED, "a busy port is no failure"
        finally:
            squatter.close()
        await wait_until(lambda: ready_count(pool) == 3, timeout_s=15)
        assert sorted(label_ports(instance).values()) == [lo, lo + 1, hi]
        assert ports_as_planned(reconciler, instance)


async def test_a_foreign_container_with_an_engines_name_costs_that_port_only_a_while(
    instance: str,
) -> None:
    lo, hi = free_port_range(2)
    settings = fleet_settings(
        instance,
        min_replicas=2,
        max_active_replicas=2,
        port_range_host=f"{lo}-{hi}",
        port_recheck_s=1,
        health_check_interval_s=0.3,
    )
    name = f"{settings.engine_name_prefix}-{instance}-{lo}"
    subprocess.run(
        ["docker", "create", "--name", name, emulator_image()], check=True, capture_output=True
    )
    try:
        async with fleet(settings) as (reconciler, pool), running(reconciler):
            await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
            assert reconciler.breaker.state is BreakerState.CLOSED
            subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
            await wait_until(lambda: ready_count(pool) == 2, timeout_s=15)
            assert sorted(label_ports(instance).values()) == [lo, hi]
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


async def test_a_leftover_container_of_ours_with_an_engines_name_is_removed_not_blamed_on_the_port(
    instance: str,
) -> None:
    # A start that died between create and register leaves a container of ours behind under the
    # next engine's name; provisioning meets it before any pass has listed it.
    lo, hi = free_port_range(2)
    settings = fleet_settings(
        instance, min_replicas=1, max_active_replicas=2, port_range_host=f"{lo}-{hi}"
    )
    name = f"{settings.engine_name_prefix}-{instance}-{lo}"
    labels = [
        "--label",
        "acestream-gateway.managed=true",
        "--label",
        f"acestream-gateway.instance={instance}",
    ]
    subprocess.run(
        ["docker", "create", "--name", name, *labels, emulator_image()],
        check=True,
        capture_output=True,
    )
    async with fleet(settings) as (reconciler, pool):
        with capture_logs() as logs:
            await reconciler.provisioner.provision(1)
        assert "engine_leftover_removed" in [e["event"] for e in logs]
        assert "engine_name_taken" not in [e["event"] for e in logs]
        (engine,) = pool.engines()
        assert engine.address.port == lo, "the port was not set aside"
        assert engine.name == name
        assert list(label_ports(instance).values()) == [lo]


# --- one container must not stop the rest ------------------------------------------------------


async def test_a_container_that_cannot_be_removed_does_not_stop_the_rest_of_the_pass(
    instance: str, tmp_path: Path
) -> None:
    settings = fleet_settings(instance, min_replicas=2)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
    stuck, other = sorted(label_ports(instance))
    subprocess.run(["docker", "stop", "-t", "0", stuck, other], check=True, capture_output=True)
    socket_path = tmp_path / "docker.sock"
    async with docker_proxy(socket_path) as proxy:
        proxy.refuse_removal = {stuck}
        async with fleet(settings, docker_url=f"unix://{socket_path}") as (reconciler, pool):
            await reconciler.reconcile()  # must not raise
            assert proxy.refused >= 1
            left = label_ports(instance)
            assert stuck in left
            assert other not in left
            await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)
            assert left[stuck] in reconciler.ports.held, "its port is held while it exists"
            stuck_name = f"{settings.engine_name_prefix}-{instance}-{left[stuck]}"
            assert list(reconciler.status().removal_failures) == [stuck_name]
            proxy.refuse_removal = set()
            await reconciler.reconcile()
            assert stuck not in label_ports(instance)
            assert reconciler.status().removal_failures == {}
            assert ports_as_planned(reconciler, instance)


# --- the hooks of a Docker event follower ------------------------------------------------------


async def test_a_died_engine_leaves_the_pool_at_once_and_its_port_is_freed_only_when_gone(
    instance: str,
) -> None:
    settings = fleet_settings(instance, min_replicas=1)
    async with fleet(settings) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
        claim = await pool.claim("a-channel")
        dead = claim.engine
        subprocess.run(["docker", "kill", dead.id], check=True, capture_output=True)
        reconciler.backend.engine_died(dead.id, "killed")
        assert pool.get(dead.id) is None
        assert claim.lost.is_set()
        assert dead.address.port in reconciler.ports.held, "the container still exists"
        subprocess.run(["docker", "rm", dead.id], check=True, capture_output=True)
        reconciler.backend.reactions.gone(dead.id)
        assert dead.address.port not in reconciler.ports.held
        claim.release()
        await reconciler.backend.relist()
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
        assert ports_as_planned(reconciler, instance)


# --- adoption after the port range changed -----------------------------------------------------


async def test_an_adopted_engine_outside_the_port_range_is_reported_and_replaced(
    instance: str,
) -> None:
    old = fleet_settings(instance, min_replicas=1)
    async with fleet(old) as (reconciler, pool):
        await reconciler.reconcile()
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
    (outsider,) = label_ports(instance)
    new = fleet_settings(instance, min_replicas=1)
    async with fleet(new) as (reconciler, pool):
        with capture_logs() as logs:
            await reconciler.reconcile()
        reported = [e for e in logs if e["event"] == "engine_port_outside_range"]
        assert [e["port"] for e in reported] == [old.port_range_host.lo]
        assert pool.get(outsider) is None, "it takes no channel and is not kept as a spare"
        await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
        ports = list(label_ports(instance).values())
        assert ports == [new.port_range_host.lo]
        assert ports_as_planned(reconciler, instance)
