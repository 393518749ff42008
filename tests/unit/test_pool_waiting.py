"""Claims that wait for an engine: a first-come queue, woken in proportion to the room a change
makes, counted as the fleet's demand, and patient failovers that wait for a leaving engine's
place instead of being refused."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import Claim, NoCapacity
from tests.support import numbered_engine as engine
from tests.support import pool_with as pool_of

pool_with = functools.partial(pool_of, max_streams=1, wait=5)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiting_claims_are_the_fleets_demand_and_leave_it_when_served() -> None:
    pool = pool_with(engine(0, EngineState.STARTING))
    changed = asyncio.create_task(pool.wait_changed())
    waiting = [asyncio.create_task(pool.claim(f"c{i}")) for i in range(3)]
    await settle()
    assert pool.waiting() == 3
    assert changed.done(), "a claim that starts waiting wakes the fleet"
    pool.set_state("e0", EngineState.READY)
    assert pool.waiting() == 2, "the first waiter got the engine"
    for task in waiting:  # before the first waiter could take its claim
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert pool.waiting() == 0
    assert pool.capacity().used == 0, "a claim handed to a cancelled waiter is given back"


async def test_waiters_get_engines_in_the_order_they_came() -> None:
    pool = pool_with(engine(0, EngineState.STARTING))
    order: list[str] = []

    async def claim(key: str) -> Claim:
        held = await pool.claim(key)
        order.append(key)
        return held

    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(claim(f"c{i}")))
        await settle()
    pool.set_state("e0", EngineState.READY)
    for _ in range(4):
        await settle()
        held = [t.result() for t in tasks if t.done()]
        held[-1].release()
    assert order == ["c0", "c1", "c2", "c3"]


async def test_a_release_wakes_only_the_waiter_it_makes_room_for() -> None:
    pool = pool_with(engine(0), engine(1, EngineState.STARTING))
    first = await pool.claim("first")
    waiters = [asyncio.create_task(pool.claim(f"c{i}")) for i in range(100)]
    await settle()
    choices = 0
    choose: Callable[..., Any] = pool._choose  # counting the work, not testing it

    def counting(content_key: str | None, avoid: Any) -> Any:
        nonlocal choices
        choices += content_key is not None  # a selection for a waiting channel
        return choose(content_key, avoid)

    pool._choose = counting  # type: ignore[method-assign]
    first.release()
    await settle()
    assert sum(t.done() for t in waiters) == 1
    assert choices <= 2, f"one release made {choices} selections for waiting channels"
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_a_failover_at_a_full_fleet_waits_for_the_place_of_the_engine_it_leaves() -> None:
    pool = pool_with(engine(0), engine(1), max_engines=2)
    leaving = await pool.claim("a")
    other = await pool.claim("b")
    pool.set_state(leaving.engine.id, EngineState.UNHEALTHY)
    move = asyncio.create_task(
        pool.claim("a", exclude={leaving.engine.id}, wait_for_provisioning=True)
    )
    await settle()
    assert not move.done(), "refused at once though the unhealthy engine is to give its place"
    assert pool.snapshot()[0].moving == 1
    with pytest.raises(NoCapacity):
        await pool.claim("new channel")  # a new channel is still refused at once
    pool.remove(leaving.engine.id)
    leaving.release()
    pool.add(engine(2, EngineState.STARTING))
    pool.set_state("e2", EngineState.READY)
    assert (await asyncio.wait_for(move, 1)).engine.id == "e2"
    other.release()


async def test_a_failover_at_a_full_fleet_of_healthy_engines_is_refused_at_once() -> None:
    pool = pool_with(engine(0), engine(1), max_engines=2)
    held = [await pool.claim("a"), await pool.claim("b")]
    with pytest.raises(NoCapacity):
        await pool.claim("a", exclude={held[0].engine.id}, wait_for_provisioning=True)


async def test_waiters_are_refused_when_the_last_starting_engine_fails() -> None:
    pool = pool_with(engine(0, EngineState.STARTING), max_engines=1)
    waiting = asyncio.create_task(pool.claim("a"))
    await settle()
    pool.set_state("e0", EngineState.UNHEALTHY)
    with pytest.raises(NoCapacity):
        await asyncio.wait_for(waiting, 1)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 12), st.booleans()),
        st.tuples(st.just("release"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("ready"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("unhealthy"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("add"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("remove"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("cancel"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("yield"), st.integers(0, 3), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(1, 3), st.randoms(use_true_random=False))
def test_waking_in_order_never_overfills_an_engine_nor_leaves_a_waiter_beside_room(
    ops: list[tuple[str, int, bool]], max_streams: int, rnd: random.Random
) -> None:
    async def scenario() -> None:
        pool = pool_with(
            engine(0), engine(1, EngineState.STARTING), max_streams=max_streams, max_engines=6
        )
        pending: dict[asyncio.Task[Claim], tuple[str, frozenset[str]]] = {}
        held: list[Claim] = []

        def check() -> None:
            loads = {x.engine.id: x for x in pool.snapshot()}
            for x in loads.values():
                assert x.streams <= max_streams, "an engine took more than its streams"
            for task, (key, avoid) in pending.items():
                if task.done():
                    continue
                for x in loads.values():
                    holds = any(c.content_key == key for c in pool.claims_on(x.engine.id))
                    free = x.engine.state is EngineState.READY and x.streams < max_streams
                    assert not (free and not holds and x.engine.id not in avoid), (
                        f"a waiter for {key} waits beside room on {x.engine.id}"
                    )

        for op, arg, flag in ops:
            if op == "claim":
                avoid = frozenset({"e0"}) if flag else frozenset()
                task = asyncio.create_task(
                    pool.claim(f"k{arg}", exclude=avoid, wait_for_provisioning=flag)
                )
                pending[task] = (f"k{arg}", avoid)
            elif op == "release":
                for task in [t for t in pending if t.done()]:
                    del pending[task]
                    if not task.cancelled() and task.exception() is None:
                        held.append(task.result())
                if held:
                    held.pop(arg % len(held)).release()
            elif op == "ready":
                pool.set_state(f"e{arg}", EngineState.READY)
            elif op == "unhealthy":
                pool.set_state(f"e{arg}", EngineState.UNHEALTHY)
            elif op == "add":
                pool.add(engine(arg, EngineState.STARTING if flag else EngineState.READY))
            elif op == "remove":
                pool.remove(f"e{arg}")
            elif op == "cancel" and pending:
                list(pending)[arg % len(pending)].cancel()
            for _ in range(arg if op == "yield" else 1):
                await asyncio.sleep(0)
            check()
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*pending, return_exceptions=True)
        for claim in [*held, *(r for r in results if isinstance(r, Claim))]:
            claim.release()
        assert pool.capacity().used == 0
        assert pool.waiting() == 0

    del rnd
    asyncio.run(scenario())
