"""The fleet plan: MIN_REPLICAS counts empty engines, MAX is a hard cap, reaping is careful."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import EngineLoad
from acestream_gateway.fleet.plan import FleetPlan, plan_fleet

NOW = 1000.0


def load(
    n: int, streams: int = 0, state: EngineState = EngineState.READY, idle_for: float | None = None
) -> EngineLoad:
    engine = Engine(
        id=f"e{n}",
        name=f"engine-{n:02d}",
        address=EngineAddress("127.0.0.1", 19000 + n),
        state=state,
    )
    idle_since = None if streams else NOW - (idle_for if idle_for is not None else 0.0)
    return EngineLoad(engine, pending=0, active=streams, idle_since=idle_since)


def test_ten_busy_engines_and_min_one_start_an_eleventh() -> None:
    loads = [load(i, streams=1) for i in range(10)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=20, grace_s=30, now=NOW)
    assert plan.start == 1
    assert plan.remove == ()


def test_starting_engines_count_as_spares() -> None:
    loads = [load(0, streams=1), load(1, state=EngineState.STARTING)]
    assert plan_fleet(loads, min_replicas=1, max_replicas=5, grace_s=30, now=NOW).start == 0


def test_the_fleet_never_grows_past_max() -> None:
    loads = [load(i, streams=2) for i in range(4)]
    assert plan_fleet(loads, min_replicas=3, max_replicas=5, grace_s=30, now=NOW).start == 1


def test_an_idle_surplus_engine_is_reaped_only_after_the_grace_period() -> None:
    young = [load(0, idle_for=10), load(1, idle_for=10)]
    assert plan_fleet(young, min_replicas=1, max_replicas=5, grace_s=30, now=NOW).remove == ()
    old = [load(0, idle_for=100), load(1, idle_for=40)]
    assert plan_fleet(old, min_replicas=1, max_replicas=5, grace_s=30, now=NOW).remove == ("e0",)


def test_a_ready_spare_is_not_reaped_while_the_only_other_spare_is_still_starting() -> None:
    loads = [load(0, idle_for=100), load(1, state=EngineState.STARTING)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=5, grace_s=30, now=NOW)
    assert plan.remove == ()
    assert plan.start == 0


def test_a_ready_surplus_spare_is_reaped_once_enough_ready_spares_remain() -> None:
    loads = [load(0, idle_for=100), load(1, idle_for=100), load(2, state=EngineState.STARTING)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=5, grace_s=30, now=NOW)
    assert plan.remove == ("e0",)
    assert plan.start == 0


def test_an_unhealthy_busy_engine_is_replaced_at_once_and_removed_after_its_wait() -> None:
    loads = [load(0, streams=1, state=EngineState.UNHEALTHY), load(1, streams=2)]
    waiting = plan_fleet(
        loads,
        min_replicas=1,
        max_replicas=5,
        grace_s=30,
        now=NOW,
        unhealthy_since={"e0": NOW - 5},
        unhealthy_wait_s=10,
    )
    assert waiting == FleetPlan(start=1, remove=())
    overdue = plan_fleet(
        loads,
        min_replicas=1,
        max_replicas=5,
        grace_s=30,
        now=NOW,
        unhealthy_since={"e0": NOW - 10},
        unhealthy_wait_s=10,
    )
    assert overdue == FleetPlan(start=1, remove=("e0",))


def test_a_draining_engine_goes_once_it_carries_nothing_and_is_never_a_spare() -> None:
    busy = [load(0, streams=1, state=EngineState.DRAINING)]
    assert plan_fleet(busy, min_replicas=1, max_replicas=5, grace_s=30, now=NOW) == FleetPlan(
        start=1, remove=()
    )
    idle = [load(0, state=EngineState.DRAINING), load(1)]
    assert plan_fleet(idle, min_replicas=1, max_replicas=5, grace_s=30, now=NOW) == FleetPlan(
        start=0, remove=("e0",)
    )


def test_unhealthy_idle_engines_are_replaced() -> None:
    loads = [load(0, state=EngineState.UNHEALTHY), load(1, streams=1)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=2, grace_s=30, now=NOW)
    assert plan.remove == ("e0",)
    assert plan.start == 1


fleet = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(list(EngineState)),
        st.floats(0, 200),
    ),
    max_size=25,
).map(
    lambda specs: [load(i, streams, state, idle) for i, (streams, state, idle) in enumerate(specs)]
)


@given(fleet, st.integers(1, 10), st.integers(1, 25))
def test_plan_rules_hold_for_any_fleet(
    loads: list[EngineLoad], min_replicas: int, max_replicas: int
) -> None:
    min_replicas = min(min_replicas, max_replicas)
    plan = plan_fleet(
        loads, min_replicas=min_replicas, max_replicas=max_replicas, grace_s=30, now=NOW
    )
    by_id = {x.engine.id: x for x in loads}
    removed = [by_id[i] for i in plan.remove]
    assert len(set(plan.remove)) == len(plan.remove)
    assert all(x.streams == 0 for x in removed), "never remove an engine that carries a stream"
    kept = [x for x in loads if x.engine.id not in plan.remove]
    assert len(kept) + plan.start <= max(max_replicas, len(kept)), "never grow past MAX"
    if len(kept) <= max_replicas:
        assert len(kept) + plan.start <= max_replicas
    spares_kept = sum(
        1
        for x in kept
        if x.streams == 0 and x.engine.state in (EngineState.READY, EngineState.STARTING)
    )
    if len(loads) <= max_replicas:
        # Spares reach MIN_REPLICAS unless MAX leaves no room beside the other engines;
        # reaping never takes them below it, and only engines idle past the grace period go.
        others = len(kept) - spares_kept
        assert spares_kept + plan.start >= min(min_replicas, max_replicas - others)
        for x in removed:
            if x.engine.state is EngineState.READY:
                assert x.idle_since is not None
                assert NOW - x.idle_since >= 30


@given(fleet, st.integers(1, 10), st.integers(1, 25))
def test_reaping_never_takes_the_ready_spares_below_min_replicas(
    loads: list[EngineLoad], min_replicas: int, max_replicas: int
) -> None:
    min_replicas = min(min_replicas, max_replicas)
    plan = plan_fleet(
        loads, min_replicas=min_replicas, max_replicas=max_replicas, grace_s=30, now=NOW
    )

    def ready_spares(ids: set[str]) -> int:
        return sum(
            1
            for x in loads
            if x.engine.id in ids and x.engine.state is EngineState.READY and not x.streams
        )

    every = {x.engine.id for x in loads}
    before = ready_spares(every)
    after = ready_spares(every - set(plan.remove))
    going = (EngineState.UNHEALTHY, EngineState.DRAINING)
    staying = sum(1 for x in loads if x.streams or x.engine.state not in going)
    if staying <= max_replicas:  # above MAX, idle engines go whatever the floor
        assert after >= min(before, min_replicas)
    assert plan.start == 0 or after == before, "never reap and start in one pass"


def leaving(n: int, streams: int, moving: int, state: EngineState) -> EngineLoad:
    engine = Engine(
        id=f"e{n}", name=f"engine-{n:02d}", address=EngineAddress("127.0.0.1", 19000 + n)
    )
    engine.state = state
    return EngineLoad(engine, pending=0, active=streams, idle_since=None, moving=moving)


def test_waiting_claims_start_as_many_engines_as_the_fleet_has_room_for() -> None:
    loads = [load(0, streams=1), load(1, state=EngineState.STARTING)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=10, grace_s=30, now=NOW, waiting=5)
    assert plan == FleetPlan(start=5, remove=()), "the floor plus five, minus the one starting"
    capped = plan_fleet(loads, min_replicas=1, max_replicas=4, grace_s=30, now=NOW, waiting=5)
    assert capped.start == 2


def test_no_spare_is_reaped_while_claims_wait() -> None:
    loads = [load(0, idle_for=100), load(1, idle_for=100)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=5, grace_s=30, now=NOW, waiting=1)
    assert plan.remove == ()


def test_a_leaving_engine_at_max_gives_its_place_to_its_channels_new_home() -> None:
    loads = [
        load(0, streams=1),
        leaving(1, streams=2, moving=2, state=EngineState.UNHEALTHY),
        load(2, streams=1),
    ]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=3, grace_s=30, now=NOW, waiting=2)
    assert plan == FleetPlan(start=1, remove=("e1",))


def test_with_room_a_leaving_engine_keeps_streaming_while_its_replacement_starts() -> None:
    loads = [load(0, streams=1), leaving(1, streams=1, moving=1, state=EngineState.UNHEALTHY)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=4, grace_s=30, now=NOW, waiting=1)
    assert plan == FleetPlan(start=2, remove=())


def test_an_engine_draining_quietly_is_not_cut_to_make_room() -> None:
    loads = [leaving(0, streams=1, moving=0, state=EngineState.DRAINING), load(1, streams=1)]
    plan = plan_fleet(loads, min_replicas=1, max_replicas=2, grace_s=30, now=NOW, waiting=1)
    assert plan == FleetPlan(start=0, remove=())


@st.composite
def fleets_with_leaving_engines(draw: st.DrawFn) -> list[EngineLoad]:
    loads = draw(fleet)
    going = (EngineState.UNHEALTHY, EngineState.DRAINING)
    return [
        EngineLoad(x.engine, 0, x.active, x.idle_since, draw(st.integers(0, x.active)))
        if x.engine.state in going
        else x
        for x in loads
    ]


@given(fleets_with_leaving_engines(), st.integers(1, 10), st.integers(1, 25), st.integers(0, 12))
def test_demand_never_takes_the_fleet_past_max_counting_removals_first(
    loads: list[EngineLoad], min_replicas: int, max_replicas: int, waiting: int
) -> None:
    min_replicas = min(min_replicas, max_replicas)
    plan = plan_fleet(
        loads,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        grace_s=30,
        now=NOW,
        waiting=waiting,
    )
    by_id = {x.engine.id: x for x in loads}
    removed = [by_id[i] for i in plan.remove]
    assert len(set(plan.remove)) == len(plan.remove)
    kept = len(loads) - len(removed)
    assert kept + plan.start <= max(max_replicas, kept), "never a container past MAX"
    going = (EngineState.UNHEALTHY, EngineState.DRAINING)
    for x in removed:
        if x.streams:  # only a leaving engine whose channels wait to move, for their places
            assert x.engine.state in going
            assert x.moving
            assert waiting
    if waiting:
        assert not any(x.streams == 0 and x.engine.state is EngineState.READY for x in removed) or (
            len(loads) > max_replicas
        ), "no spare is reaped while claims wait"
    # Waiting demand gets the starts the room allows, once engines already starting are counted.
    starting = sum(1 for x in loads if x.engine.state is EngineState.STARTING)
    spares = sum(
        1
        for x in loads
        if not x.streams and x.engine.state in (EngineState.READY, EngineState.STARTING)
    )
    room = max_replicas - kept
    assert plan.start >= min(waiting + min_replicas - spares, room)
    assert plan.start >= min(waiting - starting, room) or spares > starting
    # At MAX, a leaving engine with channels to move gives up its place before a start.
    movable = [x for x in loads if x.engine.state in going and x.moving and x.streams]
    full = len(loads) - sum(1 for x in removed if not x.streams) >= max_replicas
    if waiting > spares and full and movable:
        assert any(x.streams for x in removed)
