"""At MAX_ACTIVE_REPLICAS, a leaving engine gives its place to the engine its channels wait for:
the reconciler removes it first and starts the replacement only once the removal is done (and
none when the removal failed, since its container still holds the place). Docker is a recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import Claim, EnginePool
from acestream_gateway.fleet.docker import FleetError, docker_client
from acestream_gateway.fleet.provisioner import Provisioned
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.settings import Settings

PORT = 19000
MAX = 3


class Recorder:
    """What the reconciler asked for, in order; removals fail when ``refuse`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.refuse = False

    async def remove(self, container_id: str) -> None:
        self.calls.append(("remove", container_id))
        if self.refuse:
            raise FleetError(500, "cannot remove")

    async def provision(self, wanted: int) -> Provisioned:
        self.calls.append(("provision", wanted))
        return Provisioned()


@pytest.fixture
async def reconciler() -> AsyncIterator[Reconciler]:
    settings = Settings(
        port_range_host=f"{PORT}-{PORT + MAX - 1}",
        max_active_replicas=MAX,
        max_streams_per_engine=1,
    )
    pool = EnginePool(max_streams_per_engine=1, max_engines=MAX, provision_wait_s=30)
    async with (
        aiohttp.ClientSession() as http,
        docker_client("unix:///nonexistent/docker.sock") as docker,
    ):
        client = EngineClient(http, api_timeout_s=1, stop_timeout_s=1)
        yield Reconciler(settings=settings, docker=docker, pool=pool, client=client)


async def full_fleet_with_one_engine_leaving(
    reconciler: Reconciler, recorder: Recorder
) -> tuple[Engine, asyncio.Task[Claim]]:
    pool = reconciler._pool
    for n in range(MAX):
        engine = Engine(f"c{n}", f"engine-{n}", EngineAddress("127.0.0.1", PORT + n))
        assert reconciler.admission.hold(engine.id, PORT + n)  # as the reconciler adopts one
        pool.add(engine)
        pool.set_state(engine.id, EngineState.READY)
    claims = [await pool.claim(f"channel-{n}") for n in range(MAX)]
    leaving = claims[0].engine
    pool.set_state(leaving.id, EngineState.UNHEALTHY)
    move = asyncio.create_task(
        pool.claim("channel-0", exclude={leaving.id}, wait_for_provisioning=True)
    )
    await asyncio.sleep(0)
    assert pool.waiting() == 1
    reconciler.backend._docker = recorder  # type: ignore[assignment]
    reconciler.provisioner.provision = recorder.provision  # type: ignore[method-assign]
    return leaving, move


async def test_a_leaving_engine_at_max_is_removed_before_its_replacement_starts(
    reconciler: Reconciler,
) -> None:
    recorder = Recorder()
    leaving, move = await full_fleet_with_one_engine_leaving(reconciler, recorder)
    await reconciler.plan_follower.apply()
    assert recorder.calls == [("remove", leaving.id), ("provision", 1)]
    move.cancel()
    await asyncio.gather(move, return_exceptions=True)


async def test_no_engine_starts_in_the_place_of_a_leaving_one_that_could_not_be_removed(
    reconciler: Reconciler,
) -> None:
    recorder = Recorder()
    recorder.refuse = True
    leaving, move = await full_fleet_with_one_engine_leaving(reconciler, recorder)
    await reconciler.plan_follower.apply()
    assert recorder.calls[0] == ("remove", leaving.id)
    assert all(wanted == 0 for call, wanted in recorder.calls if call == "provision")
    move.cancel()
    await asyncio.gather(move, return_exceptions=True)
