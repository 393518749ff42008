"""Ports: one per engine, reserved once, freed once, adoption never double-counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.fleet.ports import PortAllocator, PortsExhausted, is_bind_failure


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reserve_gives_distinct_ports_until_the_range_is_exhausted() -> None:
    ports = PortAllocator(19000, 19002)
    got = [ports.reserve(f"e{i}") for i in range(3)]
    assert got == [19000, 19001, 19002]
    with pytest.raises(PortsExhausted):
        ports.reserve("e3")


def test_adopting_the_same_engine_twice_counts_its_port_once() -> None:
    ports = PortAllocator(19000, 19009)
    assert ports.claim(19004, "abc")
    assert ports.claim(19004, "abc")
    assert not ports.claim(19004, "other")
    assert ports.held == {19004: "abc"}
    assert ports.reserve("new") == 19000


def test_released_ports_are_reused_and_avoided_ports_skipped() -> None:
    ports = PortAllocator(19000, 19009)
    port = ports.reserve("a")
    ports.release(port)
    assert ports.reserve("b", avoid={19000}) == 19001


def test_a_port_that_failed_to_bind_is_skipped_for_a_while_then_tried_again() -> None:
    clock = Clock()
    ports = PortAllocator(19000, 19001, recheck_s=30, clock=clock)
    first = ports.reserve("a")
    ports.set_aside(first)
    assert ports.aside == [first]
    assert ports.reserve("b") == 19001
    with pytest.raises(PortsExhausted):
        ports.reserve("c")
    clock.now += 30
    assert ports.aside == []
    assert ports.reserve("c") == first


def test_a_range_of_exactly_max_ports_can_always_be_filled_again() -> None:
    clock = Clock()
    ports = PortAllocator(19000, 19002, recheck_s=5, clock=clock)
    for _ in range(3):  # every port of the range fails to bind once
        ports.set_aside(ports.reserve("x"))
    with pytest.raises(PortsExhausted):
        ports.reserve("x")
    clock.now += 5
    assert sorted(ports.reserve(f"e{i}") for i in range(3)) == [19000, 19001, 19002]


def test_held_ports_outside_the_range_are_reported() -> None:
    ports = PortAllocator(19000, 19009)
    assert ports.claim(18000, "old")
    assert ports.claim(19003, "new")
    assert ports.outside_range() == {18000: "old"}
    assert not ports.in_range(18000)


@pytest.mark.parametrize(
    ("message", "bind"),
    [
        (
            "driver failed programming external connectivity on endpoint x: Bind for "
            "127.0.0.1:19000 failed: port is already allocated",
            True,
        ),
        (
            "Error starting userland proxy: listen tcp4 127.0.0.1:19000: "
            "bind: address already in use",
            True,
        ),
        ('Conflict. The container name "/e" is already in use by container "abc"', False),
        ("No such image: acestream/missing:0", False),
    ],
)
def test_only_a_bind_failure_blames_the_port(message: str, bind: bool) -> None:
    assert is_bind_failure(message) is bind


ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 5)),
        st.tuples(st.just("release"), st.integers(19000, 19009)),
        st.tuples(st.just("set_aside"), st.integers(19000, 19009)),
        st.tuples(st.just("wait"), st.integers(0, 40)),
    ),
    max_size=60,
)


@given(ops)
def test_no_port_is_ever_held_twice_and_nothing_is_set_aside_for_good(
    steps: list[tuple[str, int]],
) -> None:
    clock = Clock()
    ports = PortAllocator(19000, 19009, recheck_s=30, clock=clock)
    for op, arg in steps:
        if op == "reserve":
            try:
                port = ports.reserve(str(arg))
            except PortsExhausted:
                assert len(ports.held) + len(ports.aside) >= 10
            else:
                assert 19000 <= port <= 19009
                assert port not in ports.aside
        elif op == "release":
            ports.release(arg)
        elif op == "set_aside":
            ports.set_aside(arg)
            assert arg not in ports.held
        else:
            clock.now += arg
        assert len(ports.held) <= 10
        assert not set(ports.held) & set(ports.aside)
    clock.now += 30
    assert ports.aside == []
