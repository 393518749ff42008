"""The pool through engines' whole lives: states, failures, removal, lost claims, racing claims.

A state machine drives the pool against a model of what it must hold after every step; a second
test races many claim coroutines while engines come, turn bad and go.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import Claim, ClaimState, EnginePool, NoCapacity
from acestream_gateway.engines.provisioning import BlockedReason

STATES = list(EngineState)
CONTENTS = [f"content-{n}" for n in range(4)]


def make_engine(n: int, state: EngineState) -> Engine:
    return Engine(
        id=f"e{n}",
        name=f"engine-{n}",
        address=EngineAddress("10.0.0.2", 19000 + n),
        state=state,
        created_at=float(n),
    )


@dataclass
class Held:
    """The model's view of one claim."""

    claim: Claim
    engine_id: str
    content: str
    released: bool = False
    active: bool = False
    lost: bool = False


@dataclass
class Model:
    states: dict[str, EngineState] = field(default_factory=dict)  # engines in the pool
    failures: dict[str, int] = field(default_factory=dict)
    held: list[Held] = field(default_factory=list)

    def live(self, engine_id: str | None = None) -> list[Held]:
        return [h for h in self.held if not h.released and engine_id in (None, h.engine_id)]

    def load(self, engine_id: str) -> int:
        return len(self.live(engine_id))

    def candidates(self, content: str, exclude: set[str], max_streams: int) -> set[str]:
        holding = {h.engine_id for h in self.live() if h.content == content}
        return {
            engine_id
            for engine_id, state in self.states.items()
            if state is EngineState.READY
            and engine_id not in exclude | holding
            and self.load(engine_id) < max_streams
        }

    def turned_bad(self, engine_id: str) -> None:
        for h in self.live(engine_id):
            h.lost = True


class PoolMachine(RuleBasedStateMachine):
    engine_ids = Bundle("engine_ids")
    claims = Bundle("claims")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model = Model()
        self.numbers = itertools.count()
        self.pool: EnginePool

    @initialize(max_streams=st.integers(1, 3), threshold=st.integers(1, 4))
    def build(self, max_streams: int, threshold: int) -> None:
        # No waiting: a claim either lands at once or is refused at once.
        self.pool = EnginePool(
            max_streams_per_engine=max_streams,
            max_engines=6,
            provision_wait_s=0,
            failure_threshold=threshold,
        )

    def teardown(self) -> None:
        self.loop.close()

    # --- the fleet --------------------------------------------------------------------------

    @rule(target=engine_ids, state=st.sampled_from(STATES))
    def add(self, state: EngineState) -> str:
        engine = make_engine(next(self.numbers), state)
        self.pool.add(engine)
        self.model.states[engine.id] = state
        return engine.id

    @rule(engine_id=engine_ids, state=st.sampled_from(STATES))
    def set_state(self, engine_id: str, state: EngineState) -> None:
        self.pool.set_state(engine_id, state)
        if engine_id not in self.model.states:
            return
        if state is EngineState.UNHEALTHY and self.model.states[engine_id] is not state:
            self.model.turned_bad(engine_id)
        self.model.states[engine_id] = state

    @rule(engine_id=engine_ids)
    def remove(self, engine_id: str) -> None:
        self.pool.remove(engine_id)
        if self.model.states.pop(engine_id, None) is not None:
            self.model.failures.pop(engine_id, None)
            self.model.turned_bad(engine_id)
        assert self.pool.get(engine_id) is None

    @rule(engine_id=engine_ids)
    def note_failure(self, engine_id: str) -> None:
        made_unhealthy = self.pool.note_failure(engine_id, "probe timed out")
        state = self.model.states.get(engine_id)
        if state is None:
            assert not made_unhealthy
            return
        count = self.model.failures.get(engine_id, 0) + 1
        self.model.failures[engine_id] = count
        expected = count >= self.pool.failure_threshold and state is EngineState.READY
        assert made_unhealthy is expected
        if expected:
            self.model.states[engine_id] = EngineState.UNHEALTHY
            self.model.turned_bad(engine_id)

    @rule(engine_id=engine_ids)
    def note_success(self, engine_id: str) -> None:
        self.pool.note_success(engine_id)
        self.model.failures.pop(engine_id, None)

    # --- the data path ----------------------------------------------------------------------

    @rule(
        target=claims,
        content=st.sampled_from(CONTENTS),
        exclude=st.sets(st.integers(0, 8).map(lambda n: f"e{n}"), max_size=3),
    )
    def claim(self, content: str, exclude: set[str]) -> Held | MultipleResults[Held]:
        loads = {engine_id: self.model.load(engine_id) for engine_id in self.model.states}
        candidates = self.model.candidates(content, exclude, self.pool.max_streams_per_engine)
        try:
            claim = self.loop.run_until_complete(self.pool.claim(content, exclude=exclude))
        except NoCapacity:
            assert not candidates, f"refused although {sorted(candidates)} had room"
            return multiple()
        engine_id = claim.engine.id
        assert engine_id in candidates, f"landed on {engine_id}, not one of {candidates}"
        assert loads[engine_id] == min(loads[c] for c in candidates), "not the least loaded"
        assert claim.state is ClaimState.PENDING
        assert not claim.lost.is_set()
        held = Held(claim, engine_id, content)
        self.model.held.append(held)
        return held

    @rule(held=claims)
    def activate(self, held: Held) -> None:
        held.claim.activate()
        held.active = held.active or not held.released

    @rule(held=claims)
    def release(self, held: Held) -> None:
        held.claim.release()
        held.released = True

    # --- what must hold after every step ----------------------------------------------------

    @invariant()
    def capacity_is_counted_in_engines(self) -> None:
        capacity = self.pool.capacity()
        assert 0 <= capacity.used <= capacity.total
        assert capacity.available == capacity.total - capacity.used
        with_streams = {e for e in self.model.states if self.model.load(e)}
        ready = {e for e, s in self.model.states.items() if s is EngineState.READY}
        assert capacity.used == len(with_streams)
        assert capacity.total == len(ready | with_streams)
        assert capacity.streams == sum(self.model.load(e) for e in self.model.states)

    @invariant()
    def no_engine_is_overfilled_or_holds_one_content_twice(self) -> None:
        for engine_id in self.model.states:
            claims = self.pool.claims_on(engine_id)
            assert len(claims) <= self.pool.max_streams_per_engine
            contents = [c.content_key for c in claims]
            assert len(contents) == len(set(contents)), f"{engine_id} holds {contents}"

    @invariant()
    def snapshot_matches_the_model(self) -> None:
        loads = {load.engine.id: load for load in self.pool.snapshot()}
        assert set(loads) == set(self.model.states)
        for engine_id, load in loads.items():
            live = self.model.live(engine_id)
            assert load.engine.state is self.model.states[engine_id]
            assert load.active == sum(1 for h in live if h.active)
            assert load.pending == sum(1 for h in live if not h.active)
            assert (load.idle_since is None) == bool(live), "idle exactly when it has no claim"
            assert self.pool.failures(engine_id) == self.model.failures.get(engine_id, 0)

    @invariant()
    def a_claim_is_lost_exactly_when_its_engine_turned_bad_while_held(self) -> None:
        for held in self.model.held:
            assert held.claim.lost.is_set() is held.lost, (
                f"claim on {held.engine_id}: lost={held.claim.lost.is_set()}, expected {held.lost}"
            )
            expected_state = (
                ClaimState.RELEASED
                if held.released
                else ClaimState.ACTIVE
                if held.active
                else ClaimState.PENDING
            )
            assert held.claim.state is expected_state


PoolMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_the_pool_keeps_its_rules_through_any_life_of_its_engines = PoolMachine.TestCase


# --- failures in a row ----------------------------------------------------------------------


@given(st.integers(1, 5), st.lists(st.booleans(), max_size=30))
def test_threshold_failures_in_a_row_make_a_ready_engine_unhealthy(
    threshold: int, outcomes: list[bool]
) -> None:
    pool = EnginePool(
        max_streams_per_engine=1, max_engines=1, provision_wait_s=0, failure_threshold=threshold
    )
    pool.add(make_engine(1, EngineState.READY))
    in_a_row = 0
    for ok in outcomes:
        if ok:
            pool.note_success("e1")
            in_a_row = 0
            continue
        in_a_row += 1
        turned = pool.note_failure("e1", "probe timed out")
        assert turned is (in_a_row == threshold), "only the failure that crosses it turns it"
        engine = pool.get("e1")
        assert engine is not None
        assert (engine.state is EngineState.UNHEALTHY) is (in_a_row >= threshold)
        if turned:
            assert not pool.has_room()
            return


def test_an_unknown_engine_counts_no_failures() -> None:
    pool = EnginePool(max_streams_per_engine=1, max_engines=1, provision_wait_s=0)
    assert not pool.note_failure("gone", "probe timed out")
    pool.note_success("gone")
    assert pool.failures("gone") == 0


def test_a_removed_engine_forgets_its_failures() -> None:
    pool = EnginePool(
        max_streams_per_engine=1, max_engines=2, provision_wait_s=0, failure_threshold=3
    )
    pool.add(make_engine(1, EngineState.READY))
    pool.note_failure("e1", "probe timed out")
    pool.remove("e1")
    assert pool.failures("e1") == 0


# --- racing claims --------------------------------------------------------------------------

fleet_ops = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(0, 5), st.sets(st.integers(0, 5), max_size=2)),
        st.tuples(st.just("state"), st.integers(0, 5), st.sampled_from(STATES)),
        st.tuples(st.just("add"), st.integers(0, 5), st.sampled_from(STATES)),
        st.tuples(st.just("remove"), st.integers(0, 5), st.none()),
        st.tuples(st.just("fail"), st.integers(0, 5), st.none()),
        st.tuples(st.just("release"), st.integers(0, 1000), st.none()),
        st.tuples(st.just("yield"), st.integers(1, 3), st.none()),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(fleet_ops, st.integers(1, 3))
@example(  # a waiter handed a claim on an engine that turned STARTING and went before it ran
    ops=[
        ("claim", 0, set()),
        ("claim", 0, set()),
        ("claim", 0, set()),
        ("remove", 0, None),
        ("yield", 2, None),
        ("add", 3, EngineState.READY),
        ("state", 3, EngineState.STARTING),
    ],
    max_streams=1,
)
def test_racing_claims_keep_the_rules_while_engines_come_turn_bad_and_go(
    ops: list[tuple[str, int, object]], max_streams: int
) -> None:
    async def scenario() -> None:
        pool = EnginePool(
            max_streams_per_engine=max_streams,
            max_engines=6,
            provision_wait_s=30,  # waiters end when the fleet is blocked below, not by time
            failure_threshold=2,
        )
        for n in range(3):
            pool.add(make_engine(n, EngineState.READY))
        held: list[Claim] = []
        lost_expected: set[int] = set()  # ids of claims whose engine turned bad while held

        def check_rules() -> None:
            capacity = pool.capacity()
            assert 0 <= capacity.used <= capacity.total
            assert capacity.available == capacity.total - capacity.used
            for engine in pool.engines():
                claims = pool.claims_on(engine.id)
                assert len(claims) <= max_streams
                assert len({c.content_key for c in claims}) == len(claims)
            for claim in held:
                assert claim.lost.is_set() is (claim.id in lost_expected)

        def turned_bad(engine_id: str) -> None:
            lost_expected.update(c.id for c in held if c.engine.id == engine_id)

        async def claimer(content: str, exclude: set[str]) -> None:
            await asyncio.sleep(0)
            try:
                claim = await pool.claim(content, exclude=exclude)
            except NoCapacity:
                return
            # Nothing ran between the choice and here: the engine is as the claim found it.
            assert claim.engine.id not in exclude
            assert pool.get(claim.engine.id) is claim.engine
            assert claim.engine.state is EngineState.READY
            held.append(claim)
            check_rules()

        tasks: list[asyncio.Task[None]] = []
        for op, n, arg in ops:
            engine_id = f"e{n}"
            if op == "claim":
                exclude = {f"e{x}" for x in cast(set[int], arg)}
                tasks.append(asyncio.create_task(claimer(f"c{n % 3}", exclude)))
            elif op == "state":
                state = cast(EngineState, arg)
                engine = pool.get(engine_id)
                if engine is not None and engine.state is not state is EngineState.UNHEALTHY:
                    turned_bad(engine_id)
                pool.set_state(engine_id, state)
            elif op == "add" and pool.get(engine_id) is None:
                if not any(c.engine.id == engine_id for c in held):
                    pool.add(make_engine(n, cast(EngineState, arg)))
            elif op == "remove":
                if pool.get(engine_id) is not None:
                    turned_bad(engine_id)
                pool.remove(engine_id)
            elif op == "fail":
                engine = pool.get(engine_id)
                before = engine.state if engine is not None else None
                if pool.note_failure(engine_id, "session start timed out"):
                    assert before is EngineState.READY
                    turned_bad(engine_id)
            elif op == "release" and held:
                claim = held.pop(n % len(held))
                claim.release()
                lost_expected.discard(claim.id)
            elif op == "yield":
                for _ in range(n):
                    await asyncio.sleep(0)
            check_rules()
        # Whoever still waits for an engine hears at once that none will come.
        pool.block(BlockedReason.DOCKER_UNAVAILABLE, "cannot provision engines: docker is gone")
        for engine in pool.engines():
            if engine.state is EngineState.STARTING:
                turned_bad(engine.id)
                pool.remove(engine.id)
        async with asyncio.timeout(1):
            await asyncio.gather(*tasks)
        check_rules()
        for claim in held:
            claim.release()
        assert pool.capacity().used == 0
        assert all(not pool.claims_on(engine.id) for engine in pool.engines())

    asyncio.run(scenario())


async def test_a_burst_of_claims_for_one_content_puts_it_once_on_each_engine() -> None:
    pool = EnginePool(max_streams_per_engine=3, max_engines=4, provision_wait_s=0)
    for n in range(4):
        pool.add(make_engine(n, EngineState.READY))
    results = await asyncio.gather(*(pool.claim("same") for _ in range(50)), return_exceptions=True)
    claims = [r for r in results if isinstance(r, Claim)]
    assert sorted(c.engine.id for c in claims) == ["e0", "e1", "e2", "e3"]
    assert all(isinstance(r, NoCapacity) for r in results if not isinstance(r, Claim))


async def test_a_waiting_claim_skips_an_engine_that_turned_bad_and_takes_the_next_ready_one() -> (
    None
):
    pool = EnginePool(max_streams_per_engine=1, max_engines=4, provision_wait_s=5)
    pool.add(make_engine(0, EngineState.READY))
    first = await pool.claim("a")
    pool.add(make_engine(1, EngineState.STARTING))
    pool.add(make_engine(2, EngineState.STARTING))
    waiting = asyncio.create_task(pool.claim("b", exclude=["e2"]))
    await asyncio.sleep(0)
    pool.set_state("e2", EngineState.READY)  # excluded: not for this claim
    pool.set_state("e1", EngineState.UNHEALTHY)
    await asyncio.sleep(0)
    assert not waiting.done()
    pool.remove("e1")
    pool.add(make_engine(3, EngineState.STARTING))
    pool.set_state("e3", EngineState.READY)
    claim = await asyncio.wait_for(waiting, 1)
    assert claim.engine.id == "e3"
    assert not first.lost.is_set()


@pytest.mark.parametrize("bad", ["unhealthy", "removed"])
async def test_a_claim_released_before_its_engine_turned_bad_is_not_lost(bad: str) -> None:
    pool = EnginePool(max_streams_per_engine=2, max_engines=2, provision_wait_s=0)
    pool.add(make_engine(0, EngineState.READY))
    early = await pool.claim("a")
    early.release()
    late = await pool.claim("b")
    if bad == "unhealthy":
        pool.set_state("e0", EngineState.UNHEALTHY)
    else:
        pool.remove("e0")
    assert late.lost.is_set()
    assert not early.lost.is_set()
