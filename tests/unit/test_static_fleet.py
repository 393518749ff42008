"""The static fleet's pure parts: its engines come from their URLs alone, the health prober picks
the engines it must bring back, and a fleet that cannot grow refuses a channel at once."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engine_urls import EngineUrl
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool, NoCapacity
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.fleet.health import probe_targets
from acestream_gateway.fleet.static import FIXED_FLEET, static_engine

states = st.lists(st.sampled_from(list(EngineState)), max_size=12)


def engines_in(states: list[EngineState]) -> list[Engine]:
    return [
        Engine(id=f"e{n}", name=f"e{n}", address=EngineAddress("10.0.0.2", 6878 + n), state=s)
        for n, s in enumerate(states)
    ]


def test_a_static_engine_is_named_and_addressed_after_its_url_and_starts_starting() -> None:
    engine = static_engine(EngineUrl("nas.local", 6878))
    assert (engine.id, engine.name) == ("static-nas.local-6878", "static-nas.local-6878")
    assert engine.address == EngineAddress("nas.local", 6878)
    assert engine.state is EngineState.STARTING
    assert engine.endpoint == "static"


def test_the_same_url_gives_the_same_engine_on_every_start() -> None:
    url = EngineUrl("::1", 6879)
    first, again = static_engine(url), static_engine(url)
    assert (first.id, first.name, first.address) == (again.id, again.name, again.address)


@given(states)
def test_health_rounds_probe_ready_engines_only_unless_reviving(
    states: list[EngineState],
) -> None:
    engines = engines_in(states)
    assert probe_targets(engines) == [e for e in engines if e.state is EngineState.READY]


@given(states)
def test_reviving_rounds_probe_unhealthy_engines_too_and_never_starting_or_draining(
    states: list[EngineState],
) -> None:
    engines = engines_in(states)
    wanted = (EngineState.READY, EngineState.UNHEALTHY)
    assert probe_targets(engines, revive=True) == [e for e in engines if e.state in wanted]


async def test_a_fixed_fleet_with_no_room_refuses_at_once_with_max_capacity() -> None:
    # MAX_ACTIVE_REPLICAS-sized limit far above the fleet: the block alone must refuse at once.
    pool = EnginePool(max_streams_per_engine=1, max_engines=20, provision_wait_s=30)
    pool.block(BlockedReason.MAX_CAPACITY, FIXED_FLEET)
    busy, down = engines_in([EngineState.READY, EngineState.UNHEALTHY])
    pool.add(busy)
    pool.add(down)
    assert (await pool.claim("a")).engine is busy
    async with asyncio.timeout(1):  # at once: not after PROVISION_WAIT_S
        with pytest.raises(NoCapacity) as refused:
            await pool.claim("b")
    assert refused.value.code is BlockedReason.MAX_CAPACITY
    assert refused.value.reason == FIXED_FLEET
    assert refused.value.retry_after_s >= 1


async def test_a_fixed_fleet_with_room_still_takes_channels() -> None:
    pool = EnginePool(max_streams_per_engine=2, max_engines=1, provision_wait_s=30)
    pool.block(BlockedReason.MAX_CAPACITY, FIXED_FLEET)
    (engine,) = engines_in([EngineState.READY])
    pool.add(engine)
    assert (await pool.claim("a")).engine is engine
    assert (await pool.claim("b")).engine is engine
