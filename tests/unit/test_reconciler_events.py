"""What the reconciler does when its event follower tells it something, without a Docker call.

None of these hooks speaks to Docker (they must act within a second and while Docker is away), so
the reconciler gets a Docker client for a socket that does not exist: any call would fail.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from structlog.testing import capture_logs

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool, NoCapacity
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.docker import docker_client
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.fleet.specs import ContainerRecord
from acestream_gateway.settings import Settings

PORT = 19000


@pytest.fixture
async def reconciler() -> AsyncIterator[Reconciler]:
    settings = Settings(
        port_range_host=f"{PORT}-{PORT + 3}", max_active_replicas=4, max_streams_per_engine=1
    )
    pool = EnginePool(max_streams_per_engine=1, max_engines=4, provision_wait_s=30)
    async with (
        aiohttp.ClientSession() as http,
        docker_client("unix:///nonexistent/docker.sock") as docker,
    ):
        client = EngineClient(http, api_timeout_s=1, stop_timeout_s=1)
        yield Reconciler(settings=settings, docker=docker, pool=pool, client=client)


def add_engine(reconciler: Reconciler, n: int) -> Engine:
    """An engine as the reconciler adopts one: in the pool, ready, holding its port."""
    port = PORT + n
    engine = Engine(
        id=f"c{n}", name=f"engine-{n}", address=EngineAddress("127.0.0.1", port), created_at=n
    )
    assert reconciler.admission.hold(engine.id, port)
    reconciler._pool.add(engine)
    reconciler._pool.set_state(engine.id, EngineState.READY)
    return engine


async def test_a_dead_engine_leaves_the_pool_its_claims_are_lost_and_its_port_stays_held(
    reconciler: Reconciler,
) -> None:
    engine = add_engine(reconciler, 0)
    claim = await reconciler._pool.claim("channel")
    reconciler.backend.container_stopped(engine.id, "die")
    assert reconciler._pool.get(engine.id) is None
    assert claim.lost.is_set()
    assert reconciler.ports.held == {PORT: engine.id}, "the container still exists"


async def test_a_dead_container_docker_still_lists_as_running_is_removed_not_adopted_again(
    reconciler: Reconciler,
) -> None:
    dead, alive = add_engine(reconciler, 0), add_engine(reconciler, 1)
    reconciler.backend.container_stopped(dead.id, "die")
    listed = [ContainerRecord(e.id, e.name, "running", {}) for e in (dead, alive)]
    assert [r.running for r in reconciler.backend.reactions.with_deaths(listed)] == [False, True]


async def test_a_removed_container_frees_its_port(reconciler: Reconciler) -> None:
    engine = add_engine(reconciler, 0)
    reconciler.backend.container_stopped(engine.id, "die")
    reconciler.backend.container_destroyed(engine.id)
    assert reconciler.ports.held == {}


async def test_a_container_missing_from_a_listing_frees_the_port_of_its_dead_engine(
    reconciler: Reconciler,
) -> None:
    dead, alive = add_engine(reconciler, 0), add_engine(reconciler, 1)
    reconciler.backend.container_stopped(dead.id, "die")
    adoption = reconciler.backend.adoption
    adoption.free_ports_of_gone([])  # its destroy event came while the stream was down
    assert reconciler.ports.held == {PORT + 1: alive.id}


async def test_a_failed_docker_health_check_makes_the_engine_unhealthy(
    reconciler: Reconciler,
) -> None:
    engine = add_engine(reconciler, 0)
    claim = await reconciler._pool.claim("channel")
    reconciler.backend.container_unhealthy(engine.id)
    assert engine.state is EngineState.UNHEALTHY
    assert claim.lost.is_set()
    assert reconciler.ports.held == {PORT: engine.id}


async def test_events_of_unknown_containers_change_nothing(reconciler: Reconciler) -> None:
    engine = add_engine(reconciler, 0)
    reconciler.backend.container_stopped("other", "die")
    reconciler.backend.container_destroyed("other")
    reconciler.backend.container_unhealthy("other")
    assert reconciler._pool.engines() == [engine]
    assert reconciler.ports.held == {PORT: engine.id}


async def test_without_docker_a_new_engine_is_refused_at_once_but_a_channel_that_fits_plays(
    reconciler: Reconciler,
) -> None:
    busy, spare = add_engine(reconciler, 0), add_engine(reconciler, 1)
    playing = await reconciler._pool.claim("playing")
    assert playing.engine is busy
    with capture_logs() as logs:
        reconciler.backend.docker_reachable(False, "cannot connect to unix:///run/docker.sock", 4)
        reconciler.backend.docker_reachable(False, "cannot connect to unix:///run/docker.sock", 8)
    fits = await reconciler._pool.claim("fits")
    assert fits.engine is spare
    started = time.monotonic()
    with pytest.raises(NoCapacity) as refused:
        await reconciler._pool.claim("needs a new engine")
    assert time.monotonic() - started < 0.1
    assert refused.value.code is BlockedReason.DOCKER_UNAVAILABLE
    assert 1 <= refused.value.retry_after_s <= 8
    assert "docker.sock" not in refused.value.reason, "players get a reason, logs the detail"
    assert not playing.lost.is_set(), "Docker's silence touches no stream"
    assert len(reconciler._pool.engines()) == 2
    assert [e["event"] for e in logs] == ["docker_unreachable"], "logged once per outage"


async def test_once_docker_answers_again_the_block_is_lifted_and_logged_once(
    reconciler: Reconciler,
) -> None:
    reconciler.backend.docker_reachable(False, "cannot reach Docker", 1)
    with capture_logs() as logs:
        reconciler.backend.docker_reachable(True)
        reconciler.backend.docker_reachable(True)
    assert reconciler._pool.provisioning.current() is None
    assert [e["event"] for e in logs] == ["docker_reachable"]
