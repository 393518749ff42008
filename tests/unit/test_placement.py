"""Placement in VPN mode: engines spread over the VPNs that can take one, and exactly one engine
per VPN on its forwarded port, replaced when the port changes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.fleet.placement import (
    P2pEngine,
    Share,
    choose_share,
    plan_forwarding,
    ports_to_avoid,
    usable_forwarded_port,
)
from acestream_gateway.settings import PortRange

shares = st.lists(
    st.builds(
        Share,
        name=st.sampled_from("abcdefgh"),
        usable=st.booleans(),
        engines=st.integers(0, 20),
        free=st.integers(0, 5),
    ),
    max_size=6,
    unique_by=lambda s: s.name,
)


@given(shares)
def test_the_next_engine_goes_behind_a_usable_vpn_with_fewest_engines(listed: list[Share]) -> None:
    chosen = choose_share(listed)
    candidates = [s for s in listed if s.usable and s.free > 0]
    if not candidates:
        assert chosen is None
        return
    share = next(s for s in listed if s.name == chosen)
    assert share in candidates
    assert share.engines == min(s.engines for s in candidates)
    assert share == next(s for s in candidates if s.engines == share.engines)  # first on ties


@given(st.integers(1, 8), st.integers(0, 40))
def test_starting_engines_one_by_one_keeps_the_vpns_even(vpns: int, starts: int) -> None:
    counts = dict.fromkeys(range(vpns), 0)
    for _ in range(starts):
        chosen = choose_share([Share(str(n), True, c, 100) for n, c in counts.items()])
        assert chosen is not None
        counts[int(chosen)] += 1
    assert max(counts.values()) - min(counts.values()) <= 1


def test_a_vpn_that_is_down_or_full_gets_no_engine() -> None:
    assert choose_share([Share("a", False, 0, 3), Share("b", True, 5, 0)]) is None
    assert choose_share([Share("a", False, 0, 3), Share("b", True, 5, 1)]) == "b"


def test_a_forwarded_port_that_is_an_engine_http_port_is_not_used() -> None:
    assert usable_forwarded_port(19003, PortRange((19000, 19009))) is None
    assert usable_forwarded_port(40000, PortRange((19000, 19009))) == 40000
    assert usable_forwarded_port(None, PortRange((19000, 19009))) is None


def test_the_http_port_whose_own_p2p_port_is_forwarded_is_avoided() -> None:
    share = PortRange((19000, 19003))
    own = {p: p + 1000 for p in share.ports()}
    assert ports_to_avoid(share, 20002, own) == {19002}
    assert ports_to_avoid(share, 45000, own) == set()
    assert ports_to_avoid(share, None, own) == set()


def engine(n: int, p2p: int | None = None, idle: bool = True) -> P2pEngine:
    own = 20000 + n
    return P2pEngine(f"e{n}", own if p2p is None else p2p, own, idle, created_at=n)


def test_nothing_changes_while_no_port_is_forwarded() -> None:
    assert plan_forwarding([engine(0, p2p=45000)], None) == plan_forwarding([], None)
    assert plan_forwarding([engine(0, p2p=45000)], None).retire == ()


def test_the_engine_on_the_forwarded_port_keeps_it() -> None:
    plan = plan_forwarding([engine(0), engine(1, p2p=45000)], 45000)
    assert (plan.holder, plan.retire, plan.give_next) == ("e1", (), False)


def test_when_the_port_changes_the_engine_on_the_old_one_is_replaced_and_the_next_gets_it() -> None:
    plan = plan_forwarding([engine(0), engine(1, p2p=45000, idle=False)], 46000)
    assert (plan.holder, plan.retire, plan.give_next) == (None, ("e1",), True)


def test_with_nobody_on_the_port_an_idle_engine_is_replaced_for_it() -> None:
    plan = plan_forwarding([engine(0, idle=False), engine(1), engine(2)], 45000)
    assert (plan.holder, plan.retire, plan.give_next) == (None, ("e1",), True)


def test_a_start_already_taking_the_port_is_waited_for() -> None:
    plan = plan_forwarding([engine(0), engine(1)], 45000, starting_with_it=True)
    assert (plan.holder, plan.retire, plan.give_next) == (None, (), False)


p2p_engines = st.lists(
    st.builds(
        P2pEngine,
        id=st.sampled_from([f"e{i}" for i in range(10)]),
        p2p_port=st.one_of(st.none(), st.sampled_from([20000, 20001, 45000, 46000])),
        own_p2p_port=st.sampled_from([20000, 20001]),
        idle=st.booleans(),
        created_at=st.floats(0, 100),
    ),
    max_size=8,
    unique_by=lambda e: e.id,
)


@given(p2p_engines, st.sampled_from([45000, 46000, 20000]))
def test_applying_the_plan_leaves_at_most_one_engine_on_the_forwarded_port(
    engines: list[P2pEngine], forwarded: int
) -> None:
    plan = plan_forwarding(engines, forwarded)
    kept = [e for e in engines if e.id not in plan.retire]
    on_it = [e for e in kept if e.p2p_port == forwarded]
    assert len(on_it) <= 1
    assert (plan.holder is None) == (not on_it)
    assert not any(e.p2p_port not in (e.own_p2p_port, forwarded, None) for e in kept)
    assert plan.give_next == (plan.holder is None)
    assert len([e for e in plan.retire if e not in {x.id for x in engines}]) == 0
