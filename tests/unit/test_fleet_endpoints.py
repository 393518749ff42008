"""The fleet over several Docker endpoints (fake daemons): engines spread by the placement policy,
MAX_ACTIVE_REPLICAS holds over all of them, an endpoint that goes away blocks only its share and
is taken back without duplicates, and endpoints never adopt each other's engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.actions import ActionRefused
from acestream_gateway.fleet.docker import FleetError
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.fleet.specs import LABEL_ENDPOINT, LABEL_PORT
from acestream_gateway.settings import Settings
from tests.fakedocker import FakeDocker

IMAGE = "acestream/engine:test"

Build = Callable[..., tuple[Reconciler, dict[str, FakeDocker]]]


def endpoint(name: str, ports: str, max_engines: int) -> dict[str, object]:
    return {
        "name": name,
        "url": f"unix:///run/{name}.sock",
        "ports": ports,
        "max_engines": max_engines,
    }


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    made: list[Reconciler] = []
    async with aiohttp.ClientSession() as http:

        def make(
            endpoints: list[dict[str, object]], shared: bool = False, **values: Any
        ) -> tuple[Reconciler, dict[str, FakeDocker]]:
            settings = Settings(
                docker_endpoints=json.dumps(endpoints),
                engine_image=IMAGE,
                engine_preset="custom",
                health_check_interval_s=30,
                **{"max_active_replicas": 4, "min_replicas": 1, **values},
            )
            one = FakeDocker(images=(IMAGE,))
            fakes = {
                str(e["name"]): one if shared else FakeDocker(images=(IMAGE,)) for e in endpoints
            }
            pool = EnginePool(
                max_streams_per_engine=1,
                max_engines=settings.max_active_replicas,
                provision_wait_s=30,
            )
            client = EngineClient(http, api_timeout_s=1, stop_timeout_s=1)
            reconciler = Reconciler(settings=settings, dockers=fakes, pool=pool, client=client)
            made.append(reconciler)
            return reconciler, fakes

        try:
            yield make
        finally:
            for reconciler in made:
                await reconciler.close()


def ports_of(fake: FakeDocker, name: str) -> list[int]:
    return sorted(
        int(c.labels[LABEL_PORT])
        for c in fake.containers.values()
        if c.labels.get(LABEL_ENDPOINT) == name
    )


async def test_engines_spread_over_endpoints_by_most_free_room(build: Build) -> None:
    reconciler, fakes = build(
        [endpoint("a", "19000-19009", 3), endpoint("b", "19000-19009", 3)], min_replicas=4
    )
    await reconciler.reconcile()
    assert (len(fakes["a"].containers), len(fakes["b"].containers)) == (2, 2)
    for name, fake in fakes.items():
        assert all(c.labels[LABEL_ENDPOINT] == name for c in fake.containers.values())
    by_endpoint = sorted(e.endpoint for e in reconciler._pool.engines())
    assert by_endpoint == ["a", "a", "b", "b"]


async def test_max_active_replicas_holds_over_all_endpoints_under_a_burst(build: Build) -> None:
    reconciler, fakes = build(
        [endpoint("a", "19000-19009", 3), endpoint("b", "20000-20009", 3)],
        max_active_replicas=4,
    )
    await reconciler.reconcile()  # as at start: each endpoint listed, MIN_REPLICAS started
    assert sum(len(f.containers) for f in fakes.values()) == 1
    results = await asyncio.gather(
        *(reconciler.actions.start_engine() for _ in range(12)), return_exceptions=True
    )
    assert sum(len(f.containers) for f in fakes.values()) == 4
    assert max(len(f.containers) for f in fakes.values()) <= 3, "a share was passed"
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 9
    assert all(isinstance(r, ActionRefused) for r in refused), refused


async def test_an_endpoint_that_goes_away_blocks_only_its_share(build: Build) -> None:
    reconciler, fakes = build(
        [endpoint("a", "19000-19009", 3), endpoint("b", "20000-20009", 3)], min_replicas=2
    )
    await reconciler.reconcile()
    assert (len(fakes["a"].containers), len(fakes["b"].containers)) == (1, 1)
    fakes["b"].down = True
    await reconciler.reconcile()  # does not raise: the other endpoint carries on
    status = {s.name: s for s in reconciler.status().endpoints}
    assert not status["b"].reachable
    assert "fake daemon down" in (status["b"].down_reason or "")
    assert status["a"].reachable
    assert reconciler._pool.blocked() is None, "players are not refused while a has room"
    started = await reconciler.actions.start_engine()
    assert started.endpoint == "a"
    assert len(fakes["a"].containers) == 2

    fakes["b"].down = False
    await reconciler.reconcile()
    assert reconciler.status().endpoints[1].reachable
    assert len(fakes["b"].containers) == 1, "its engine is adopted again, not duplicated"
    held = reconciler.backends["b"].ports.held
    assert sorted(held) == ports_of(fakes["b"], "b"), "no port counted twice"


async def test_every_endpoint_gone_blocks_players_naming_each(build: Build) -> None:
    reconciler, fakes = build([endpoint("a", "19000-19009", 3), endpoint("b", "20000-20009", 3)])
    for fake in fakes.values():
        fake.down = True
    with pytest.raises(FleetError):
        await reconciler.reconcile()
    block = reconciler._pool.blocked()
    assert block is not None
    assert block.reason is BlockedReason.DOCKER_UNAVAILABLE
    assert "endpoint a:" in block.message
    assert "endpoint b:" in block.message


async def test_endpoints_on_one_daemon_never_adopt_each_others_engines(build: Build) -> None:
    endpoints = [endpoint("a", "19000-19009", 3), endpoint("b", "19000-19009", 3)]
    first, fakes = build(endpoints, shared=True, min_replicas=2)
    await first.reconcile()
    fake = fakes["a"]
    assert len(fake.containers) == 2
    assert len({c.name for c in fake.containers.values()}) == 2, "names differ by endpoint"
    again, _ = build(endpoints, shared=True, min_replicas=2)
    again.backends["a"]._docker = fake  # a restarted gateway, on the same daemon
    again.backends["b"]._docker = fake
    await again.reconcile()
    assert len(fake.containers) == 2, "each endpoint adopted its own; none was made again"
    assert sorted(e.endpoint for e in again._pool.engines()) == ["a", "b"]
