"""Docker's event stream against the real daemon: what the fleet hears, how fast, and what a
Docker API that goes away (a proxy the test cuts) does to it."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from acestream_gateway.engines.model import EngineState
from acestream_gateway.fleet.docker import ContainerEvent, FleetError, docker_client
from acestream_gateway.fleet.events import event_filter
from acestream_gateway.fleet.specs import instance_filter
from acestream_gateway.settings import Settings
from tests.equipment.docker_proxy import DockerProxy, docker_proxy
from tests.integration.test_fleet_docker import fleet, fleet_settings, ready_count
from tests.support import containers_of, emulator_image, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[DockerProxy]:
    with docker_proxy(tmp_path / "docker.sock") as running:
        yield running


def run_labelled(instance: str, *docker_args: str) -> str:
    """A container labelled as one of ``instance``'s engines, started with the docker CLI."""
    result = subprocess.run(
        [
            "docker", "run", "-d", "--name", f"{instance}-{uuid.uuid4().hex[:6]}",
            "--label", "acestream-gateway.managed=true",
            "--label", f"acestream-gateway.instance={instance}",
            *docker_args, emulator_image(), "--client-console", "--http-port", "6878",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


async def next_events(events: AsyncIterator[ContainerEvent], count: int) -> list[ContainerEvent]:
    async with asyncio.timeout(20):
        return [await anext(events) for _ in range(count)]


async def docker(*args: str) -> None:
    """The docker CLI without blocking the event loop the fleet under test runs in."""
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert await asyncio.wait_for(proc.wait(), 30) == 0


async def lost_at(lost: asyncio.Event) -> float:
    """The wall-clock time ``lost`` is set (Docker's event times are wall-clock)."""
    await lost.wait()
    return time.time()


async def test_the_stream_reports_health_death_and_removal_of_the_instance_containers_only(
    instance: str,
) -> None:
    settings = Settings(gateway_instance_name=instance)
    async with docker_client(timeout_s=10) as client:
        async with client.watch(event_filter(instance_filter(settings))) as events:
            stranger = run_labelled(f"{instance}-other", "--health-cmd", "false")
            ours = run_labelled(
                instance,
                "--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1",
            )  # fmt: skip
            (unhealthy,) = await next_events(events, 1)
            assert unhealthy == ContainerEvent(ours, "health_status", "unhealthy", unhealthy.name)
            await docker("rm", "-f", ours, stranger)
            died, destroyed = await next_events(events, 2)
            assert (died.container_id, died.action) == (ours, "die")
            assert (destroyed.container_id, destroyed.action) == (ours, "destroy")


async def test_a_cut_docker_api_ends_the_stream_with_an_unreachable_error_and_can_be_followed_again(
    instance: str, proxy: DockerProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", proxy.url)  # the gateway's client honours DOCKER_HOST
    filters = event_filter(instance_filter(Settings(gateway_instance_name=instance)))
    async with docker_client(timeout_s=5) as client:
        async with client.watch(filters) as events:
            assert proxy.open_connections >= 1
            proxy.cut()
            started = time.monotonic()
            with pytest.raises(FleetError) as broken:
                await next_events(events, 1)
            assert broken.value.unreachable
            assert time.monotonic() - started < 1
        with pytest.raises(FleetError) as refused:
            async with client.watch(filters):
                pass
        assert refused.value.unreachable
        proxy.restore()
        async with client.watch(filters) as events:
            container = run_labelled(instance)
            await docker("kill", container)
            (died,) = await next_events(events, 1)
            assert (died.container_id, died.action) == (container, "die")


async def test_a_killed_engine_leaves_the_pool_within_a_second_its_port_reused_once_it_is_gone(
    instance: str,
) -> None:
    # A long interval: only the event stream can tell the fleet of the death this fast.
    settings = fleet_settings(instance, min_replicas=1, health_check_interval_s=60)
    async with fleet(settings) as (reconciler, pool):
        loop = asyncio.create_task(reconciler.run())
        try:
            await wait_until(lambda: ready_count(pool) == 1, timeout_s=30)
            claim = await pool.claim("channel")
            victim = claim.engine
            (port,) = reconciler.ports.held
            since = str(int(time.time()) - 1)
            await wait_until(lambda: ready_count(pool) == 2, timeout_s=30)  # its spare
            lost = asyncio.create_task(lost_at(claim.lost))
            killing = time.monotonic()
            await docker("kill", victim.id)
            await asyncio.wait_for(asyncio.shield(lost), 5)
            assert time.monotonic() - killing < 1.0, "from the kill command to the claim lost"
            assert pool.get(victim.id) is None
            # The channel fails over to the spare, so the fleet needs a new one.
            successor_claim = await pool.claim("channel", exclude=[victim.id])
            claim.release()

            def replaced() -> bool:
                engines = [e for e in pool.engines() if e.state is EngineState.READY]
                return len(engines) == 2 and reconciler.ports.held.get(port) not in (
                    None,
                    victim.id,
                )

            await wait_until(replaced, timeout_s=30)
            assert victim.id not in {c["Id"] for c in containers_of(instance)}
            successor = reconciler.ports.held[port]
            assert sorted(reconciler.ports.held.values()) == sorted(e.id for e in pool.engines())
            # Docker's own record: the old container was destroyed before the new one was made.
            history = subprocess.run(
                [
                    "docker", "events", "--since", since, "--until", str(int(time.time()) + 1),
                    "--filter", f"label=acestream-gateway.instance={instance}",
                    "--format", "{{.Action}} {{.Actor.ID}} {{.TimeNano}}",
                ],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.splitlines()  # fmt: skip
            times = {" ".join(line.split()[:2]): int(line.split()[2]) / 1e9 for line in history}
            assert times[f"destroy {victim.id}"] < times[f"create {successor}"]
            latency = lost.result() - times[f"die {victim.id}"]
            print(f"engine container died -> out of the pool, claim lost: {latency * 1000:.0f} ms")
            assert latency < 1.0
            successor_claim.release()
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
