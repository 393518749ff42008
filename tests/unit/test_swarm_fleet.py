"""The Swarm backend against a fake Swarm: engines are one-replica services placed by the
constraints, the engine is the service's running task (a rescheduled task is a new engine, the
old one leaves), and a new gateway adopts the services instead of making more."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.settings import Settings
from tests.fakeswarm import NODE, NODE_ADDRESS, FakeSwarm
from tests.support import wait_until

Build = Callable[..., Reconciler]


def swarm_settings(**values: Any) -> Settings:
    return Settings(
        **{
            "engine_startup_timeout_s": 60,
            **values,
        },
        fleet_backend="swarm",
        swarm_constraints="node.labels.acestream==true",
        engine_image="acestream/emulator:test",
        port_range_host="19000-19009",
        max_active_replicas=4,
        min_replicas=1,
        health_check_interval_s=30,
    )


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    made: list[Reconciler] = []
    async with aiohttp.ClientSession() as http:

        def make(swarm: FakeSwarm, **values: Any) -> Reconciler:
            settings = swarm_settings(**values)
            pool = EnginePool(max_streams_per_engine=1, max_engines=4, provision_wait_s=30)
            client = EngineClient(http, api_timeout_s=1, stop_timeout_s=1)
            reconciler = Reconciler(settings=settings, docker=swarm, pool=pool, client=client)
            made.append(reconciler)
            return reconciler

        try:
            yield make
        finally:
            for reconciler in made:
                await reconciler.close()


async def running_engine(build: Build, swarm: FakeSwarm, **values: Any) -> Reconciler:
    reconciler = build(swarm, **values)
    await reconciler.reconcile()
    swarm.run_tasks()
    await reconciler.reconcile()
    return reconciler


async def test_an_engine_is_a_service_placed_by_the_constraints_and_its_running_task(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    reconciler = build(swarm)
    await reconciler.reconcile()
    (service,) = swarm.services_by_id.values()
    assert service.spec["TaskTemplate"]["Placement"]["Constraints"] == [
        "node.labels.acestream==true"
    ]
    assert service.spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
    # Its task does not run yet: it stands as a starting engine, so no second one is made.
    await reconciler.reconcile()
    assert swarm.created == 1
    (waiting,) = reconciler.backend.engines()
    assert waiting.state is EngineState.STARTING

    swarm.run_tasks()
    await reconciler.reconcile()
    (engine,) = reconciler.backend.engines()
    assert engine.id == service.tasks[0].id
    assert engine.address == EngineAddress(NODE_ADDRESS, service.port)
    assert swarm.created == 1


async def test_a_rescheduled_task_is_a_new_engine_and_the_old_one_leaves(build: Build) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm)
    (old,) = reconciler.backend.engines()
    (service,) = swarm.services_by_id.values()

    swarm.reschedule(service.id)
    await reconciler.reconcile()
    (new,) = reconciler.backend.engines()
    assert new.id != old.id
    assert new.id == service.tasks[-1].id
    assert new.state is EngineState.STARTING, "probed until ready, like any new engine"
    assert new.address == old.address
    assert swarm.created == 1, "the service is the same; only its task is new"
    assert reconciler.ports.held == {service.port: service.id}


async def test_a_new_gateway_adopts_the_services_and_makes_none_more(build: Build) -> None:
    swarm = FakeSwarm()
    first = build(swarm)
    await first.reconcile()
    swarm.run_tasks()
    await first.reconcile()
    await first.close()

    second = build(swarm)
    await second.reconcile()
    (service,) = swarm.services_by_id.values()
    (engine,) = second.backend.engines()
    assert engine.id == service.tasks[0].id
    assert swarm.created == 1
    assert second.ports.held == {service.port: service.id}


async def test_removing_an_engine_removes_its_service_and_frees_its_port(build: Build) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm)
    (engine,) = reconciler.backend.engines()
    assert await reconciler.backend.remove_container(engine.id, engine.name, "test")
    assert swarm.services_by_id == {}
    assert reconciler.backend.engines() == []
    assert reconciler.ports.held == {}


async def test_a_service_whose_task_never_runs_is_a_failed_start_and_is_removed(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    reconciler = build(swarm, engine_startup_timeout_s=0.05)
    await reconciler.reconcile()
    (first,) = swarm.services_by_id
    await asyncio.sleep(0.1)  # no node runs its task (its image cannot be pulled, say)
    await reconciler.reconcile()
    assert first not in swarm.services_by_id
    assert reconciler.breaker.failures == 1
    assert swarm.created == 2, "another start is tried in its place"


async def test_a_gateway_started_while_a_task_is_pending_makes_no_second_service(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    first = build(swarm)
    await first.reconcile()  # its service is made; its task does not run yet
    await first.close()

    second = build(swarm)
    await second.reconcile()
    await second.reconcile()
    assert swarm.created == 1, "the service waiting for its task stands in the pool"
    (service,) = swarm.services_by_id.values()
    (waiting,) = second.backend.engines()
    assert waiting.id == service.id
    assert waiting.state is EngineState.STARTING
    assert second.ports.held == {service.port: service.id}

    swarm.run_tasks()
    await second.reconcile()
    (engine,) = second.backend.engines()
    assert engine.id == service.tasks[0].id
    assert swarm.created == 1


async def test_a_task_rescheduled_after_a_delay_makes_no_extra_service(build: Build) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm)
    (old,) = reconciler.backend.engines()
    (service,) = swarm.services_by_id.values()

    swarm.reschedule(service.id, runs=False)  # Swarm waits its restart delay
    await reconciler.reconcile()
    await reconciler.reconcile()
    assert swarm.created == 1, "the rescheduled service stands in the pool meanwhile"
    (waiting,) = reconciler.backend.engines()
    assert waiting.id == service.id
    assert waiting.state is EngineState.STARTING
    assert waiting.id != old.id, "the old task's engine left"

    swarm.run_tasks()
    await reconciler.reconcile()
    (new,) = reconciler.backend.engines()
    assert new.id == service.tasks[-1].id
    assert swarm.created == 1


async def test_a_service_found_without_a_task_that_never_runs_is_removed_and_replaced(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    first = build(swarm)
    await first.reconcile()
    await first.close()
    (found,) = swarm.services_by_id

    second = build(swarm, engine_startup_timeout_s=0.05)
    await second.reconcile()
    assert swarm.created == 1
    await asyncio.sleep(0.1)  # timed from when the new gateway first saw it without a task
    await second.reconcile()
    assert found not in swarm.services_by_id
    assert swarm.created == 2, "another start is tried in its place"


@pytest.mark.parametrize(
    "change",
    [{"availability": "drain"}, {"state": "down"}, {"state": "unknown"}, {"state": "disconnected"}],
)
async def test_engines_leave_the_pool_at_once_when_their_node_is_lost_or_drained(
    build: Build, change: dict[str, str]
) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm)
    (engine,) = reconciler.backend.engines()
    assert engine.node == NODE
    swarm.add_node("node-2", "127.0.0.2")  # a node that could take the service's next task

    # Swarm still lists the task as running.
    swarm.set_node(NODE, state=change.get("state"), availability=change.get("availability"))
    await reconciler.reconcile()
    assert reconciler._pool.get(engine.id) is None
    (service,) = swarm.services_by_id.values()
    (waiting,) = reconciler.backend.engines()
    assert waiting.id == service.id, "its service stands in, so no other is made"
    assert swarm.created == 1
    (node,) = [n for n in reconciler.endpoint_status()[0].nodes if n.id == NODE]
    assert not node.reachable
    assert node.engines == ()
    assert node.availability == change.get("availability", "active")
    assert node.state == change.get("state", "ready")


async def test_engines_come_back_when_their_node_is_active_again_with_no_new_service(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm)
    swarm.set_node(NODE, availability="drain")
    await reconciler.reconcile()
    swarm.set_node(NODE, availability="active")
    await reconciler.reconcile()
    (service,) = swarm.services_by_id.values()
    (engine,) = reconciler.backend.engines()
    assert engine.id == service.tasks[-1].id
    assert swarm.created == 1


async def test_a_paused_node_keeps_its_engines(build: Build) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm)
    (engine,) = reconciler.backend.engines()
    swarm.set_node(NODE, availability="pause")  # it takes no new task; its tasks run on
    await reconciler.reconcile()
    assert reconciler.backend.engines() == [engine]


async def test_the_status_lists_every_node_with_its_engines_and_their_ports(build: Build) -> None:
    swarm = FakeSwarm()
    swarm.add_node("node-2", "127.0.0.2", "host-2")
    reconciler = await running_engine(build, swarm)
    (engine,) = reconciler.backend.engines()
    swarm.set_node("node-2", availability="drain")
    await reconciler.reconcile()
    first, second = reconciler.endpoint_status()[0].nodes
    assert (first.hostname, first.address, first.role) == ("host-1", NODE_ADDRESS, "manager")
    assert (first.availability, first.state, first.reachable) == ("active", "ready", True)
    assert [(e.id, e.port) for e in first.engines] == [(engine.id, engine.address.port)]
    assert (second.id, second.address, second.role) == ("node-2", "127.0.0.2", "worker")
    assert (second.availability, second.reachable, second.engines) == ("drain", False, ())


async def test_a_node_event_or_a_service_event_asks_for_a_pass_at_once(build: Build) -> None:
    swarm = FakeSwarm()
    reconciler = build(swarm)  # passes every 30 s unless woken
    loop = asyncio.create_task(reconciler.run())
    try:
        await wait_until(lambda: swarm.created == 1, timeout_s=5)
        swarm.run_tasks()  # found within the second: tasks are polled while one is awaited
        await wait_until(lambda: reconciler.backend.engines()[0].node == NODE, timeout_s=5)
        (engine,) = reconciler.backend.engines()

        swarm.set_node(NODE, availability="drain")
        await wait_until(lambda: reconciler._pool.get(engine.id) is None, timeout_s=3)
        swarm.set_node(NODE, availability="active")
        await wait_until(lambda: any(e.node for e in reconciler.backend.engines()), timeout_s=5)

        (service,) = swarm.services_by_id
        await swarm.remove_service(service)  # by someone else: its engine leaves, another starts
        await wait_until(lambda: swarm.created == 2, timeout_s=3)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_a_task_killed_where_no_event_tells_leaves_the_pool_within_seconds(
    build: Build,
) -> None:
    """A manager sends no container events of other nodes, and Swarm's new task may answer on
    the same address and port: the engines' tasks are polled, so the old engine leaves long
    before the next timed pass (30 s here)."""
    swarm = FakeSwarm()
    reconciler = build(swarm)
    loop = asyncio.create_task(reconciler.run())
    try:
        await wait_until(lambda: swarm.created == 1, timeout_s=5)
        swarm.run_tasks()
        await wait_until(lambda: len(reconciler.backend.engines()[0].node) > 0, timeout_s=5)
        (old,) = reconciler.backend.engines()
        (service,) = swarm.services_by_id.values()

        swarm.reschedule(service.id)  # no event of any kind
        await wait_until(lambda: reconciler._pool.get(old.id) is None, timeout_s=3)
        (new,) = reconciler.backend.engines()
        assert new.id == service.tasks[-1].id
        assert swarm.created == 1
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_while_no_node_can_take_an_engine_none_is_started_and_provisioning_says_why(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    swarm.set_node(NODE, labels={})  # meets no constraint: node.labels.acestream==true
    reconciler = build(swarm)
    await reconciler.reconcile()
    await reconciler.reconcile()
    assert swarm.created == 0, "a service no node can run would only wait"
    block = reconciler._pool.blocked()
    assert block is not None
    assert block.reason is BlockedReason.NO_SWARM_NODE
    assert "host-1 does not meet node.labels.acestream==true" in block.message

    swarm.set_node(NODE, labels={"acestream": "true"})
    await reconciler.reconcile()
    assert swarm.created == 1
    assert reconciler._pool.blocked() is None


async def test_a_service_waiting_for_a_node_is_kept_past_its_startup_timeout_and_no_failure(
    build: Build,
) -> None:
    swarm = FakeSwarm()
    reconciler = await running_engine(build, swarm, engine_startup_timeout_s=0.05)
    (service,) = swarm.services_by_id.values()
    swarm.set_node(NODE, availability="drain")  # the only node: its task is shut down
    swarm.reschedule(service.id, runs=False)
    await reconciler.reconcile()
    await asyncio.sleep(0.1)  # past the startup timeout
    await reconciler.reconcile()
    assert list(swarm.services_by_id) == [service.id], "kept, waiting for a node"
    assert swarm.created == 1
    assert reconciler.breaker.failures == 0, "no node is no fault of the engine's"
    assert reconciler.backend.engines() == [], "it waits outside the pool: players are not kept"
    assert reconciler.ports.held == {service.port: service.id}
    block = reconciler._pool.blocked()
    assert block is not None
    assert block.message == "no Swarm node can take engines: host-1 is drained"

    swarm.set_node(NODE, availability="active")
    await reconciler.reconcile()  # the node is back: it stands in again, timed from here
    (waiting,) = reconciler.backend.engines()
    assert waiting.id == service.id
    assert swarm.created == 1
    swarm.run_tasks()
    await reconciler.reconcile()
    (engine,) = reconciler.backend.engines()
    assert engine.id == service.tasks[-1].id
    assert swarm.created == 1
