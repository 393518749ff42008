"""The test hosts' network blocks: never one the machine already has an address or route in."""

from __future__ import annotations

import random
from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.equipment.netns import pick_subnets

SPACE = IPv4Network("10.200.0.0/13")

networks = st.builds(
    lambda address, prefix: IPv4Network((address, prefix), strict=False),
    st.integers(min_value=int(SPACE.network_address) - 2**16, max_value=int(SPACE[-1]) + 2**16),
    st.integers(min_value=16, max_value=32),
)


@given(taken=st.lists(networks, max_size=40), seed=st.integers())
def test_a_picked_block_overlaps_nothing_taken_and_holds_link_and_bridge(
    taken: list[IPv4Network], seed: int
) -> None:
    subnets = pick_subnets(taken, random.Random(seed))
    assert subnets.block.subnet_of(SPACE)
    assert not any(subnets.block.overlaps(net) for net in taken)
    assert subnets.link.prefixlen == 30
    assert subnets.bridge.prefixlen == 24
    assert subnets.link.subnet_of(subnets.block)
    assert subnets.bridge.subnet_of(subnets.block)
    assert not subnets.link.overlaps(subnets.bridge)
    assert subnets.host_address != subnets.address
    assert {subnets.host_address, subnets.address} <= {str(a) for a in subnets.link.hosts()}


def test_no_block_is_picked_when_the_whole_space_is_taken() -> None:
    with pytest.raises(RuntimeError, match="no free"):
        pick_subnets([IPv4Network("10.0.0.0/8")], random.Random(0))
