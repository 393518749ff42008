"""The engine pool: capacity counted in engines, atomic claims, under any interleaving."""

from __future__ import annotations

import asyncio
import functools
import random
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestream_gateway.engines.model import Engine, EngineState
from acestream_gateway.engines.pool import (
    Claim,
    EnginePool,
    NoCapacity,
    choose_engine,
    count_capacity,
)
from acestream_gateway.engines.provisioning import BlockedReason
from tests.support import numbered_engine as engine
from tests.support import pool_with as pool_of

STATES = list(EngineState)


pool_with = functools.partial(pool_of, max_streams=2, wait=0.05)


def assert_rules(pool: EnginePool) -> None:
    capacity = pool.capacity()
    assert 0 <= capacity.used <= capacity.total
    assert capacity.available == capacity.total - capacity.used
    for load in pool.snapshot():
        assert load.streams <= pool.max_streams_per_engine


engines_st = st.lists(
    st.tuples(st.sampled_from(STATES), st.integers(0, 4)), min_size=0, max_size=8
).map(
    lambda specs: (
        [engine(i, state) for i, (state, _) in enumerate(specs)],
        {f"e{i}": load for i, (_, load) in enumerate(specs)},
    )
)


@given(engines_st, st.integers(1, 4))
def test_choice_is_a_ready_engine_with_room_and_the_least_loaded(
    data: tuple[list[Engine], dict[str, int]], max_streams: int
) -> None:
    engines, loads = data
    chosen = choose_engine(engines, loads, max_streams)
    with_room = [e for e in engines if e.state is EngineState.READY and loads[e.id] < max_streams]
    if not with_room:
        assert chosen is None
        return
    assert chosen in with_room
    assert loads[chosen.id] == min(loads[e.id] for e in with_room)


@given(engines_st, st.integers(1, 4))
def test_used_never_exceeds_total_whatever_the_streams_per_engine(
    data: tuple[list[Engine], dict[str, int]], max_streams: int
) -> None:
    engines, loads = data
    capacity = count_capacity(engines, loads, max_streams)
    assert 0 <= capacity.used <= capacity.total
    assert capacity.used == sum(1 for e in engines if loads[e.id] > 0)
    assert capacity.streams == sum(loads.values())


async def test_claims_fill_the_least_loaded_engine_first() -> None:
    pool = pool_with(engine(1), engine(2), max_streams=2)
    first = await pool.claim("a")
    second = await pool.claim("b")
    assert {first.engine.id, second.engine.id} == {"e1", "e2"}
    assert pool.capacity().used == 2
    assert pool.capacity().available == 0


async def test_a_full_fleet_refuses_at_once_with_a_reason() -> None:
    pool = pool_with(engine(1), max_streams=1, max_engines=1, wait=30)
    await pool.claim("a")
    with pytest.raises(NoCapacity) as refused:
        await asyncio.wait_for(pool.claim("b"), 1)
    assert "MAX_ACTIVE_REPLICAS" in refused.value.reason
    assert refused.value.retry_after_s > 0


async def test_a_claim_waits_for_a_starting_engine_to_become_ready() -> None:
    pool = pool_with(engine(1, EngineState.STARTING), wait=5)
    waiting = asyncio.create_task(pool.claim("a"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.set_state("e1", EngineState.READY)
    claim = await asyncio.wait_for(waiting, 1)
    assert claim.engine.id == "e1"


async def test_a_claim_gives_up_when_no_engine_becomes_ready_in_time() -> None:
    pool = pool_with(engine(1, EngineState.STARTING), wait=0.05)
    with pytest.raises(NoCapacity, match="no engine became ready"):
        await pool.claim("a")


async def test_a_blocked_fleet_refuses_with_its_reason() -> None:
    pool = pool_with(max_engines=5, wait=5)
    pool.block(BlockedReason.IMAGE_UNAVAILABLE, "cannot provision engines: image missing", 12)
    with pytest.raises(NoCapacity) as refused:
        await asyncio.wait_for(pool.claim("a"), 1)
    assert refused.value.reason == "cannot provision engines: image missing"
    assert refused.value.code is BlockedReason.IMAGE_UNAVAILABLE
    assert refused.value.retry_after_s == 12


async def test_release_is_idempotent_and_frees_the_engine() -> None:
    pool = pool_with(engine(1), max_streams=1)
    claim = await pool.claim("a")
    claim.activate()
    claim.release()
    claim.release()
    assert pool.capacity().used == 0
    assert (await pool.claim("b")).engine.id == "e1"


async def test_idle_time_starts_when_the_last_claim_is_released() -> None:
    now = [100.0]
    pool = EnginePool(
        max_streams_per_engine=2, max_engines=2, provision_wait_s=1, clock=lambda: now[0]
    )
    pool.add(engine(1))
    claim = await pool.claim("a")
    assert pool.snapshot()[0].idle_since is None
    now[0] = 150.0
    claim.release()
    assert pool.snapshot()[0].idle_since == 150.0


async def test_a_large_burst_never_overfills_an_engine() -> None:
    pool = pool_with(*(engine(i) for i in range(5)), max_streams=3, max_engines=5, wait=0.2)
    results = await asyncio.gather(
        *(pool.claim(f"c{i}") for i in range(500)), return_exceptions=True
    )
    claims = [r for r in results if isinstance(r, Claim)]
    refused = [r for r in results if isinstance(r, NoCapacity)]
    assert len(claims) == 15
    assert len(refused) == 485
    assert_rules(pool)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 50)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("activate"), st.integers(0, 50)),
        st.tuples(st.just("state"), st.tuples(st.integers(0, 3), st.sampled_from(STATES))),
        st.tuples(st.just("add"), st.integers(4, 7)),
        st.tuples(st.just("remove"), st.integers(0, 7)),
        st.tuples(st.just("yield"), st.integers(0, 3)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(1, 3), st.randoms(use_true_random=False))
def test_rules_hold_under_any_interleaving_of_claims_releases_and_fleet_changes(
    ops: list[tuple[str, object]], max_streams: int, rnd: random.Random
) -> None:
    async def scenario() -> None:
        pool = pool_with(
            *(engine(i) for i in range(4)), max_streams=max_streams, max_engines=8, wait=0.01
        )
        claims: list[Claim] = []
        tasks: list[asyncio.Task[Claim]] = []

        async def claimer(key: str) -> Claim:
            await asyncio.sleep(0)
            claim = await pool.claim(key)
            claims.append(claim)
            assert_rules(pool)
            return claim

        for op, arg in ops:
            if op == "claim":
                tasks.append(asyncio.create_task(claimer(f"k{arg}")))
            elif op == "release" and claims:
                claims.pop(rnd.randrange(len(claims))).release()
            elif op == "activate" and claims:
                claims[rnd.randrange(len(claims))].activate()
            elif op == "state":
                index, state = cast(tuple[int, EngineState], arg)
                pool.set_state(f"e{index}", state)
            elif op == "add":
                pool.add(engine(cast(int, arg)))
            elif op == "remove":
                pool.remove(f"e{arg}")
            elif op == "yield":
                for _ in range(cast(int, arg)):
                    await asyncio.sleep(0)
            assert_rules(pool)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert_rules(pool)
        for claim in claims:
            claim.release()
        assert pool.capacity().used == 0

    asyncio.run(scenario())


async def test_lifting_or_repeating_a_block_wakes_waiters_only_when_it_changes() -> None:
    pool = pool_with(max_engines=5, wait=5)
    changed = asyncio.create_task(pool.wait_changed())
    pool.unblock(BlockedReason.IMAGE_UNAVAILABLE)
    await asyncio.sleep(0)
    assert not changed.done(), "lifting a block that is not there is not a change"
    pool.block(BlockedReason.IMAGE_UNAVAILABLE, "no image")
    await asyncio.wait_for(changed, 1)
    again = asyncio.create_task(pool.wait_changed())
    pool.block(BlockedReason.IMAGE_UNAVAILABLE, "no image")
    await asyncio.sleep(0)
    assert not again.done(), "an unchanged block is not a change"
    pool.unblock(BlockedReason.IMAGE_UNAVAILABLE)
    await asyncio.wait_for(again, 1)


async def test_an_engine_with_room_for_another_channel_makes_the_pool_ready() -> None:
    pool = pool_with(engine(1), max_streams=2)
    assert pool.has_room()
    await pool.claim("a")
    assert pool.capacity().available == 0
    assert pool.has_room(), "one stream of two: the engine still takes a channel"
    await pool.claim("b")
    assert not pool.has_room()


async def test_a_claim_waiting_for_a_new_engine_does_not_hold_up_one_that_fits_now() -> None:
    pool = pool_with(engine(1), engine(2, EngineState.STARTING), max_streams=2, wait=5)
    first = await pool.claim("a")
    assert first.engine.id == "e1"
    waiting = asyncio.create_task(pool.claim("a"))  # e1 has "a" already: waits for e2
    await asyncio.sleep(0.01)
    assert not waiting.done()
    other = await asyncio.wait_for(pool.claim("b"), 0.5)  # fits on e1 now: no queueing
    assert other.engine.id == "e1"
    pool.set_state("e2", EngineState.READY)
    assert (await asyncio.wait_for(waiting, 1)).engine.id == "e2"


async def test_an_engine_never_holds_two_claims_of_one_content() -> None:
    pool = pool_with(engine(1), engine(2), max_streams=2)
    a1 = await pool.claim("a")
    a2 = await pool.claim("a")
    assert {a1.engine.id, a2.engine.id} == {"e1", "e2"}
    with pytest.raises(NoCapacity):
        await pool.claim("a")
    assert (await pool.claim("b")).engine.id in {"e1", "e2"}


async def test_a_failover_claim_avoids_the_engine_it_leaves() -> None:
    pool = pool_with(engine(1), engine(2), max_streams=2)
    old = await pool.claim("a", exclude=["e2"])
    assert old.engine.id == "e1"
    new = await pool.claim("b", exclude=[old.engine.id])
    assert new.engine.id == "e2"


async def test_failures_in_a_row_make_an_engine_unhealthy_and_its_claims_lost() -> None:
    pool = EnginePool(
        max_streams_per_engine=2, max_engines=5, provision_wait_s=0.05, failure_threshold=3
    )
    pool.add(engine(1))
    claim = await pool.claim("a")
    assert not pool.note_failure("e1", "probe timed out")
    pool.note_success("e1")  # a success starts the count over
    assert not pool.note_failure("e1", "probe timed out")
    assert not pool.note_failure("e1", "probe timed out")
    assert not claim.lost.is_set()
    assert pool.note_failure("e1", "probe timed out")
    assert pool.get("e1") is not None
    assert pool.get("e1").state is EngineState.UNHEALTHY  # type: ignore[union-attr]
    assert claim.lost.is_set()
    assert not pool.has_room(), "an unhealthy engine takes no new claims"


async def test_an_engine_that_disappears_loses_its_claims() -> None:
    pool = pool_with(engine(1), engine(2))
    claim = await pool.claim("a")
    other = await pool.claim("b", exclude=[claim.engine.id])
    pool.remove(claim.engine.id)
    assert claim.lost.is_set()
    assert not other.lost.is_set()


async def test_a_failover_claim_waits_out_a_provisioning_block_and_gets_the_new_engine() -> None:
    pool = pool_with(max_engines=5, wait=5)
    pool.block(BlockedReason.VPN_DISCONNECTED, "no VPN is connected", 3)
    waiting = asyncio.create_task(pool.claim("a", exclude={"gone"}, wait_for_provisioning=True))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "it waits instead of being refused at once"
    pool.unblock(BlockedReason.VPN_DISCONNECTED)
    pool.add(engine(1))
    claim = await asyncio.wait_for(waiting, 1)
    assert claim.engine.id == "e1"


async def test_a_failover_claim_still_blocked_at_its_deadline_says_why() -> None:
    pool = pool_with(max_engines=5, wait=0.05)
    pool.block(BlockedReason.VPN_DISCONNECTED, "no VPN is connected", 3)
    with pytest.raises(NoCapacity) as refused:
        await pool.claim("a", wait_for_provisioning=True)
    assert refused.value.code is BlockedReason.VPN_DISCONNECTED


def test_a_retired_engine_takes_no_new_channel_and_its_claims_are_told_to_move() -> None:
    pool = pool_with(engine(1))
    claim = asyncio.run(pool.claim("a"))
    pool.retire("e1")
    assert claim.lost.is_set()
    assert pool.get("e1") is not None
    assert pool.get("e1").state is EngineState.DRAINING  # type: ignore[union-attr]
    assert not pool.has_room()
