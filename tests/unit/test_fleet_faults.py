"""The fleet against a Docker that fails the ways real daemons do (``tests/fakedocker.py``): every
reservation is given back or turned into an engine, the breaker counts only what says something
about engines, and a stale listing never brings back a container that is gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.breaker import BreakerState
from acestream_gateway.fleet.reconciler import ActionRefused, Reconciler
from acestream_gateway.fleet.specs import container_name, labels
from acestream_gateway.http import manage
from acestream_gateway.http.errors import error_middleware
from acestream_gateway.http.keys import RECONCILER, SETTINGS
from acestream_gateway.settings import Settings
from tests.fakedocker import FakeContainer, FakeDocker
from tests.support import wait_until

PORT = 19000
IMAGE = "engine:test"

Build = Callable[..., Reconciler]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Reconcilers over one fake Docker each (``reconciler.fake``); their tasks end with the
    test."""
    made: list[Reconciler] = []
    async with aiohttp.ClientSession() as http:

        def make(**values: Any) -> Reconciler:
            values = {
                "port_range_host": f"{PORT}-{PORT + 11}",
                "max_active_replicas": 4,
                "min_replicas": 1,
                "max_streams_per_engine": 1,
                "engine_image": IMAGE,
                "engine_preset": "custom",
                "health_check_interval_s": 30,
                **values,
            }
            settings = Settings(**values)
            pool = EnginePool(
                max_streams_per_engine=1,
                max_engines=settings.max_active_replicas,
                provision_wait_s=30,
            )
            client = EngineClient(http, api_timeout_s=1, stop_timeout_s=1)
            fake = FakeDocker(images=(IMAGE,))
            reconciler = Reconciler(settings=settings, docker=fake, pool=pool, client=client)
            reconciler.fake = fake  # type: ignore[attr-defined]
            made.append(reconciler)
            return reconciler

        try:
            yield make
        finally:
            for reconciler in made:
                await reconciler.close()


def fake_of(reconciler: Reconciler) -> FakeDocker:
    fake = reconciler.fake  # type: ignore[attr-defined]
    assert isinstance(fake, FakeDocker)
    return fake


def add_container(reconciler: Reconciler, port: int, **extra: str) -> FakeContainer:
    """A container of this instance that exists in Docker (made by an earlier gateway run)."""
    fake = fake_of(reconciler)
    settings = reconciler._settings
    container = FakeContainer(
        f"old{port}", container_name(settings, port), {**labels(settings, port), **extra}
    )
    fake.containers[container.id] = container
    return container


def ports_match_containers(reconciler: Reconciler) -> None:
    """Every held port belongs to a container that exists, and every container holds its own."""
    fake = fake_of(reconciler)
    by_container = {int(c.labels["acestream-gateway.port"]): c.id for c in fake.containers.values()}
    assert reconciler.ports.held == by_container


async def reconcile_quietly(reconciler: Reconciler) -> None:
    with contextlib.suppress(Exception):
        await reconciler.reconcile()


async def half_open(reconciler: Reconciler) -> None:
    breaker = reconciler.breaker
    for _ in range(breaker.threshold):
        breaker.record_failure()
    await asyncio.sleep(reconciler._settings.circuit_breaker_recovery_timeout_s + 0.01)
    assert breaker.state is BreakerState.HALF_OPEN


# --- hole 2: errors on the create path ------------------------------------------------------------


async def test_an_inspect_error_after_a_name_conflict_frees_the_port_and_the_breaker_trial(
    build: Build,
) -> None:
    reconciler = build(circuit_breaker_recovery_timeout_s=0.01)
    fake = fake_of(reconciler)
    # Someone else's container has the name of the first port; asking Docker about it fails.
    foreign = FakeContainer("foreign", container_name(reconciler._settings, PORT), {})
    fake.containers[foreign.id] = foreign
    fake.fail("inspect", 500, "server error")
    await half_open(reconciler)
    await reconcile_quietly(reconciler)
    assert reconciler.ports.held == {}, "the reserved port was given back"
    assert reconciler.breaker.state is BreakerState.HALF_OPEN
    assert reconciler.breaker.permits(1) == 1, "the trial was given back, not stuck"


async def test_a_failed_start_never_cancels_a_sibling_start_in_the_middle_of_its_create(
    build: Build,
) -> None:
    reconciler = build(min_replicas=3)
    fake = fake_of(reconciler)
    fake.fail(
        "run",
        409,
        f'The container name "/{container_name(reconciler._settings, PORT)}" is already in use',
    )
    fake.fail("inspect", 500, "server error")
    fake.slow("run", 0.05)
    fake.slow("run", 0.05)
    await reconcile_quietly(reconciler)
    assert len(fake.containers) == 2, "the siblings' creates went through"
    assert {e.id for e in reconciler._pool.engines()} == set(fake.containers)
    ports_match_containers(reconciler)


async def test_a_create_that_timed_out_after_creating_keeps_its_port_and_is_adopted_next_pass(
    build: Build,
) -> None:
    reconciler = build()
    fake = fake_of(reconciler)
    fake.time_out("run", after=True)
    await reconcile_quietly(reconciler)
    [made] = fake.containers.values()
    assert PORT in reconciler.ports.held, "Docker may have made it: the port stays reserved"
    assert reconciler.breaker.failures == 0, "a slow Docker says nothing about engines"
    await reconciler.reconcile()
    assert reconciler._pool.get(made.id) is not None, "the container it made is adopted"
    assert len(fake.containers) == 1
    ports_match_containers(reconciler)
    repairs = reconciler.metrics.registry.get_sample_value(
        "acestream_gateway_ledger_repairs_total", {"kind": "reservation_adopted"}
    )
    assert repairs == 1


async def test_a_create_that_timed_out_before_creating_frees_its_port_after_its_deadline(
    build: Build,
) -> None:
    reconciler = build(docker_timeout_s=0.05)
    fake = fake_of(reconciler)
    fake.time_out("run", after=False)
    await reconcile_quietly(reconciler)
    assert fake.containers == {}
    assert reconciler.ports.held != {}, "held until Docker's listing says whether it exists"
    await asyncio.sleep(0.1)
    await reconciler.reconcile()
    [made] = fake.containers.values()
    ports_match_containers(reconciler)
    assert reconciler._pool.get(made.id) is not None
    repairs = reconciler.metrics.registry.get_sample_value(
        "acestream_gateway_ledger_repairs_total", {"kind": "reservation_expired"}
    )
    assert repairs == 1


async def test_a_cancelled_pass_leaves_no_port_held_without_a_container(build: Build) -> None:
    reconciler = build(min_replicas=2, docker_timeout_s=0.05)
    fake = fake_of(reconciler)
    gate = fake.hold("run")
    fake.slow("run", 10)
    task = asyncio.create_task(reconciler.reconcile())
    await wait_until(lambda: fake.calls.count("run") == 2, timeout_s=5, interval_s=0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gate.set()
    await asyncio.sleep(0.1)
    await reconciler.reconcile()
    ports_match_containers(reconciler)


# --- hole 8: what counts against the breaker ------------------------------------------------------


async def test_docker_timing_out_on_creates_never_opens_the_breaker(build: Build) -> None:
    reconciler = build(circuit_breaker_failure_threshold=2, docker_timeout_s=0.01)
    fake = fake_of(reconciler)
    for _ in range(3):
        fake.time_out("run", after=False)
        await reconcile_quietly(reconciler)
        await asyncio.sleep(0.02)
    assert reconciler.breaker.state is BreakerState.CLOSED
    assert reconciler.breaker.failures == 0


async def test_a_slow_image_pull_blocks_provisioning_as_docker_unavailable(build: Build) -> None:
    reconciler = build(circuit_breaker_failure_threshold=1)
    fake = fake_of(reconciler)
    fake.time_out("ensure_image", after=False)
    await reconcile_quietly(reconciler)
    block = reconciler._pool.provisioning.current()
    assert block is not None
    assert block.reason is BlockedReason.DOCKER_UNAVAILABLE
    assert "slow" in block.message or "reached" in block.message
    assert reconciler.breaker.state is BreakerState.CLOSED


async def test_an_image_that_cannot_be_pulled_counts_and_says_image_unavailable(
    build: Build,
) -> None:
    reconciler = build(circuit_breaker_failure_threshold=1, engine_image="missing:tag")
    fake_of(reconciler).pullable = False
    await reconcile_quietly(reconciler)
    block = reconciler._pool.provisioning.current()
    assert block is not None
    assert block.reason is BlockedReason.IMAGE_UNAVAILABLE
    assert reconciler.breaker.state is BreakerState.OPEN
    assert reconciler.ports.held == {}


async def test_a_create_docker_refuses_counts_against_the_breaker(build: Build) -> None:
    reconciler = build(circuit_breaker_failure_threshold=1)
    fake_of(reconciler).fail("run", 400, "invalid mount config")
    await reconcile_quietly(reconciler)
    assert reconciler.breaker.state is BreakerState.OPEN
    assert reconciler.ports.held == {}


async def test_removing_a_starting_engine_is_no_provisioning_failure(build: Build) -> None:
    reconciler = build(circuit_breaker_failure_threshold=1)
    await reconciler.reconcile()
    [starting] = reconciler._pool.engines()
    assert starting.state is EngineState.STARTING
    await reconciler.actions.remove_engine(starting.id)
    assert reconciler.breaker.state is BreakerState.CLOSED
    assert reconciler.breaker.failures == 0


# --- hole 12: a destroy event during a listing ---------------------------------------------------


async def test_a_container_destroyed_while_it_is_listed_is_not_adopted_again(
    build: Build,
) -> None:
    reconciler = build(min_replicas=1)
    fake = fake_of(reconciler)
    old = add_container(reconciler, PORT)
    await reconciler.reconcile()
    assert reconciler._pool.get(old.id) is not None
    gate = fake.hold("list", late=True)  # the listing is taken, then arrives late
    task = asyncio.create_task(reconciler.reconcile())
    await wait_until(lambda: fake.calls[-1:] == ["list"], timeout_s=5, interval_s=0.01)
    await asyncio.sleep(0.01)
    fake.destroy(old.id)
    reconciler.backend.container_destroyed(old.id)  # what the event follower does
    gate.set()
    await task
    assert reconciler._pool.get(old.id) is None
    assert PORT not in reconciler.ports.held or reconciler.ports.held[PORT] != old.id
    ports_match_containers(reconciler)


# --- hole 1 (in process): the operator's starts share the limit -----------------------------------


async def test_concurrent_operator_starts_never_pass_max_active_replicas(build: Build) -> None:
    reconciler = build(max_active_replicas=2, min_replicas=1)
    await reconciler.reconcile()  # the fleet lists its engines first, as a starting gateway does
    assert len(fake_of(reconciler).containers) == 1, "the spare"
    results = await asyncio.gather(
        *(reconciler.actions.start_engine() for _ in range(10)), return_exceptions=True
    )
    assert len(fake_of(reconciler).containers) == 2
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 9
    assert all(isinstance(r, ActionRefused) for r in refused), refused
    assert all("MAX_ACTIVE_REPLICAS" in str(r) for r in refused)


# --- hole 6: a change during a pass wakes the next one ------------------------------------------


async def test_a_claim_taken_during_a_pass_is_followed_by_a_pass_at_once(build: Build) -> None:
    reconciler = build(min_replicas=2)
    fake = fake_of(reconciler)
    add_container(reconciler, PORT)
    await reconciler.reconcile()  # adopts it and starts a second spare
    for engine in reconciler._pool.engines():
        reconciler._pool.set_state(engine.id, EngineState.READY)
    loop = asyncio.create_task(reconciler.run())
    try:
        await asyncio.sleep(0.2)
        gate = fake.hold("ensure_image")
        pulls = fake.calls.count("ensure_image")
        first = await reconciler._pool.claim("one")  # wakes a pass that starts a spare
        await wait_until(
            lambda: fake.calls.count("ensure_image") > pulls, timeout_s=5, interval_s=0.01
        )
        second = await reconciler._pool.claim("two")  # during that pass's start
        gate.set()
        # two spares again at once, not after HEALTH_CHECK_INTERVAL_S
        await wait_until(lambda: len(fake.containers) == 4, timeout_s=2, interval_s=0.02)
        first.release()
        second.release()
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


# --- POST /engines answers JSON whatever Docker does ---------------------------------------------


async def operator_start(reconciler: Reconciler) -> tuple[int, str, Any]:
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = reconciler._settings
    app[RECONCILER] = reconciler
    app.add_routes(manage.routes)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/engines")
        return resp.status, resp.content_type, await resp.json()


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [
        ("inspect_fails_after_a_name_conflict", 409, "conflict"),
        ("create_times_out", 503, "docker_unavailable"),
        ("image_refused", 502, "docker_error"),
        ("full", 409, "conflict"),
    ],
)
async def test_an_operator_start_answers_json_with_a_reason_whatever_docker_does(
    build: Build, fault: str, status: int, kind: str
) -> None:
    reconciler = build(max_active_replicas=1)
    fake = fake_of(reconciler)
    if fault == "inspect_fails_after_a_name_conflict":
        name = container_name(reconciler._settings, PORT)
        fake.containers["foreign"] = FakeContainer("foreign", name, {})
        fake.fail("inspect", 500, "server error")
    elif fault == "create_times_out":
        fake.time_out("run", after=False)
    elif fault == "image_refused":
        fake.fail("ensure_image", 500, "registry said no")
    else:
        add_container(reconciler, PORT + 5)
        await reconciler.reconcile()
    reconciler.adopted.set()  # the fleet listed its engines (none, but for "full")
    answer = await operator_start(reconciler)
    assert answer[:2] == (status, "application/json"), answer
    assert answer[2]["error"] == kind
    assert answer[2]["detail"]


async def test_an_operator_start_before_the_fleet_listed_its_engines_is_refused(
    build: Build,
) -> None:
    """Until the first listing, how many engines of the gateway's still run is not known: a
    start could pass MAX_ACTIVE_REPLICAS or take the name of an engine still running."""
    reconciler = build(max_active_replicas=1, min_replicas=1, health_check_interval_s=0.2)
    add_container(reconciler, PORT)  # left running by the gateway before this one
    with pytest.raises(ActionRefused, match="has not listed its engines since the start"):
        await reconciler.actions.start_engine()
    assert len(fake_of(reconciler).containers) == 1

    await reconciler.reconcile()
    with pytest.raises(ActionRefused, match="MAX_ACTIVE_REPLICAS"):
        await reconciler.actions.start_engine()


async def test_every_listed_container_holds_its_port_and_slot_before_the_pass_removes_any(
    build: Build,
) -> None:
    """Rule 6 at a listing: while Docker takes its time removing a dead container, a running one
    not adopted yet already holds its port and its slot, so nothing can take them meanwhile."""
    reconciler = build(max_active_replicas=2, min_replicas=1)
    fake = fake_of(reconciler)
    dead = add_container(reconciler, PORT)  # listed first: removed before the other is adopted
    dead.state = "exited"
    running = add_container(reconciler, PORT + 1)
    gate = fake.hold("remove")
    task = asyncio.create_task(reconciler.reconcile())
    try:
        await wait_until(lambda: fake.calls[-1:] == ["remove"], timeout_s=5, interval_s=0.01)
        assert reconciler.ports.held.get(PORT + 1) == running.id
        assert reconciler.admission.taken == 2
        assert reconciler.admission.room() == 0
    finally:
        gate.set()
        await task
    ports_match_containers(reconciler)
