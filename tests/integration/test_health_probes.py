"""Health probes of running engines against engine emulators in-process (no Docker needed):
hung engines are found within the threshold, never delay the verdict on others, and recover."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from acestream_gateway.emulator.config import EngineOptions, Knobs
from acestream_gateway.emulator.server import Emulator
from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.fleet.health import HealthProber

StartEngine = Callable[..., Awaitable[tuple[Engine, Emulator]]]


@pytest.fixture
async def pool() -> EnginePool:
    return EnginePool(
        max_streams_per_engine=2, max_engines=10, provision_wait_s=0.1, failure_threshold=3
    )


@pytest.fixture
async def client() -> AsyncIterator[EngineClient]:
    async with aiohttp.ClientSession() as http:
        yield EngineClient(http, api_timeout_s=2, stop_timeout_s=2)


@pytest.fixture
async def engine(pool: EnginePool) -> AsyncIterator[StartEngine]:
    """Start an emulator and put it in the pool as a READY engine."""
    started: list[Emulator] = []

    async def start(**knobs: object) -> tuple[Engine, Emulator]:
        options = EngineOptions(http_port=0, bind_all=True, host="127.0.0.1")
        emulator = Emulator(options, Knobs().updated(knobs))
        await emulator.start()
        started.append(emulator)
        engine = Engine(
            id=f"engine-{len(started)}",
            name=f"engine-{len(started)}",
            address=EngineAddress("127.0.0.1", emulator.port),
            state=EngineState.READY,
        )
        pool.add(engine)
        return engine, emulator

    yield start
    for emulator in started:
        await emulator.close()


def prober(pool: EnginePool, client: EngineClient, concurrency: int = 8) -> HealthProber:
    return HealthProber(
        pool=pool, client=client, interval_s=0.1, timeout_s=0.4, concurrency=concurrency
    )


async def test_a_hung_engine_turns_unhealthy_at_the_threshold_and_the_others_stay_ready(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    hung, _ = await engine(api_delay_s="never")
    fine, _ = await engine()
    probes = prober(pool, client)
    for round_ in range(1, 3):
        await probes.probe_all()
        assert pool.failures(hung.id) == round_
        assert hung.state is EngineState.READY
    await probes.probe_all()
    assert hung.state is EngineState.UNHEALTHY
    assert fine.state is EngineState.READY
    assert pool.failures(fine.id) == 0
    assert pool.capacity().total == 1, "an unhealthy engine is no capacity"


async def test_a_probe_that_answers_again_starts_the_count_over(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    slow, emulator = await engine(api_delay_s="never")
    probes = prober(pool, client)
    await probes.probe_all()
    await probes.probe_all()
    assert pool.failures(slow.id) == 2
    await emulator.update_knobs({"api_delay_s": 0})
    await probes.probe_all()
    assert pool.failures(slow.id) == 0
    await emulator.update_knobs({"api_delay_s": "never"})
    await probes.probe_all()
    assert slow.state is EngineState.READY, "failures must be in a row"


async def test_hung_engines_are_probed_at_the_same_time_within_the_bound(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    for _ in range(4):
        await engine(api_delay_s="never")
    started = time.monotonic()
    await prober(pool, client, concurrency=8).probe_all()
    together = time.monotonic() - started
    assert together < 0.4 * 2, "one probe timeout for all, not one per engine"
    started = time.monotonic()
    await prober(pool, client, concurrency=2).probe_all()
    bounded = time.monotonic() - started
    assert 0.4 * 2 <= bounded < 0.4 * 4, "two at a time: two timeouts in a row"


async def test_only_ready_engines_are_probed(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    starting, _ = await engine(api_delay_s="never")
    pool.set_state(starting.id, EngineState.STARTING)
    await prober(pool, client).probe_all()
    assert pool.failures(starting.id) == 0


async def test_an_engine_that_stops_taking_connections_fails_its_probes_at_once(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    # A probe must open a connection of its own each time: an engine that closed its listening
    # socket still answers on a connection kept alive from an earlier probe.
    target, emulator = await engine()
    probes = prober(pool, client)
    await probes.probe_all()
    assert pool.failures(target.id) == 0
    await emulator.update_knobs({"refuse": "close"})
    await probes.probe_all()
    assert pool.failures(target.id) == 1


def reviving(pool: EnginePool, client: EngineClient) -> HealthProber:
    return HealthProber(
        pool=pool, client=client, interval_s=0.1, timeout_s=0.4, concurrency=8, revive=True
    )


async def test_a_reviving_prober_makes_an_unhealthy_engine_ready_at_its_first_answer(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    down, emulator = await engine(api_delay_s="never")
    probes = reviving(pool, client)
    states = []
    for _ in range(4):
        await probes.probe_all()
        states.append(down.state)
    assert states[-2:] == [EngineState.UNHEALTHY] * 2, "probed while unhealthy, still no answer"
    assert pool.get(down.id) is down, "an engine nobody can replace stays in the pool"
    await emulator.update_knobs({"api_delay_s": 0})
    await probes.probe_all()
    states.append(down.state)
    assert states[-1] is EngineState.READY
    assert pool.failures(down.id) == 0
    assert (await pool.claim("a")).engine is down, "ready again means it takes channels"


async def test_a_plain_prober_leaves_an_unhealthy_engine_to_its_replacement(
    pool: EnginePool, client: EngineClient, engine: StartEngine
) -> None:
    down, _ = await engine()
    pool.set_state(down.id, EngineState.UNHEALTHY)
    await prober(pool, client).probe_all()
    assert down.state is EngineState.UNHEALTHY
