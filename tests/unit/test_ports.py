"""Ports: one per engine, reserved once, freed once, adoption never double-counts."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.fleet.ports import PortAllocator, PortsExhausted


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


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("reserve"), st.text(max_size=3)),
            st.tuples(st.just("release"), st.integers(19000, 19009)),
        ),
        max_size=50,
    )
)
def test_no_port_is_ever_held_twice(ops: list[tuple[str, object]]) -> None:
    ports = PortAllocator(19000, 19009)
    for op, arg in ops:
        if op == "reserve":
            try:
                port = ports.reserve(str(arg))
            except PortsExhausted:
                assert len(ports.held) == 10
            else:
                assert 19000 <= port <= 19009
        else:
            ports.release(cast(int, arg))
        assert len(ports.held) <= 10
