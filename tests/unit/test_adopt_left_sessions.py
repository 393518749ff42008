"""Adoption at start under what the session journal knows: an engine found at start whose
sessions cannot be accounted for is adopted out of selection (DRAINING, so the plan removes and
replaces it at once); one the journal accounts for is probed and used as usual; engines found
after the first adoption were made by this run and are never suspected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.engines.recovery import LeftSessions
from acestream_gateway.fleet.docker import docker_client
from acestream_gateway.fleet.plan import plan_fleet
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.fleet.specs import LABEL_PORT, ContainerRecord
from acestream_gateway.settings import Settings

PORT = 19000

Make = Callable[[LeftSessions | None], Reconciler]


def record(n: int) -> ContainerRecord:
    return ContainerRecord(f"c{n}", f"engine-{n}", "running", {LABEL_PORT: str(PORT + n)})


def address(n: int) -> EngineAddress:
    return EngineAddress("127.0.0.1", PORT + n)


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[Reconciler] = []
    async with (
        aiohttp.ClientSession() as http,
        docker_client("unix:///nonexistent/docker.sock") as docker,
    ):

        def reconciler(left: LeftSessions | None) -> Reconciler:
            settings = Settings(
                port_range_host=f"{PORT}-{PORT + 3}", max_active_replicas=4, min_replicas=1
            )
            pool = EnginePool(max_streams_per_engine=1, max_engines=4, provision_wait_s=30)
            client = EngineClient(http, api_timeout_s=1, stop_timeout_s=1)
            made.append(
                Reconciler(
                    settings=settings, docker=docker, pool=pool, client=client, left_sessions=left
                )
            )
            return made[-1]

        yield reconciler
        for r in made:
            await r.close()


def states(reconciler: Reconciler) -> dict[str, EngineState]:
    return {e.id: e.state for e in reconciler._pool.engines()}


async def test_engines_the_journal_cannot_account_for_are_drained_and_removed_first(
    make: Make,
) -> None:
    left = LeftSessions([], trusted=True, unaccounted={address(1)})
    reconciler = make(left)
    for n in (0, 1):
        await reconciler.backend.adoption.adopt(record(n))
    assert states(reconciler) == {"c0": EngineState.STARTING, "c1": EngineState.DRAINING}
    plan = plan_fleet(
        reconciler._pool.snapshot(), min_replicas=1, max_replicas=4, grace_s=30, now=0
    )
    assert plan.remove == ("c1",)


async def test_without_a_usable_journal_every_engine_found_at_start_is_drained(
    make: Make,
) -> None:
    reconciler = make(LeftSessions([], trusted=False))
    for n in (0, 1):
        await reconciler.backend.adoption.adopt(record(n))
    assert set(states(reconciler).values()) == {EngineState.DRAINING}


async def test_engines_found_after_the_first_adoption_are_not_suspected(make: Make) -> None:
    reconciler = make(LeftSessions([], trusted=False))
    reconciler.adopted.set()
    await reconciler.backend.adoption.adopt(record(2))
    assert states(reconciler) == {"c2": EngineState.STARTING}


async def test_without_journal_knowledge_adoption_is_as_before(make: Make) -> None:
    reconciler = make(None)
    await reconciler.backend.adoption.adopt(record(0))
    assert states(reconciler) == {"c0": EngineState.STARTING}
