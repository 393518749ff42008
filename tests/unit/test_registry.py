"""The registry's timers: lingering sessions, zapping back, and tracking every task it starts;
players who leave while their channel waits, and the bound on channels waiting at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import ContentRef, InputKind
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.streaming.channel import Timeouts
from acestream_gateway.streaming.errors import PlayerLeft, TooManyStarting
from acestream_gateway.streaming.registry import StreamRegistry
from tests.support import wait_until

CONTENT = ContentRef(InputKind.CONTENT_ID, "a" * 40)


async def test_a_linger_timer_cancelled_late_does_not_untrack_its_successor() -> None:
    pool = EnginePool(max_streams_per_engine=1, max_engines=1, provision_wait_s=5)
    async with aiohttp.ClientSession() as http:
        registry = StreamRegistry(
            pool=pool,
            client=EngineClient(http, api_timeout_s=1, stop_timeout_s=1),
            timeouts=Timeouts(first_data_s=1, stall_s=1, keepalive_s=1),
            window_bytes=1 << 20,
            linger_s=60,
        )
        channel = registry._channel_for(CONTENT)  # waits for an engine: none will come
        registry._start_linger(channel)
        first = registry._lingers[channel]
        registry._lingers.cancel(channel)
        registry._start_linger(channel)  # a player came and went before the first timer ended
        second = registry._lingers[channel]
        await asyncio.gather(first, return_exceptions=True)  # the cancelled timer ends now
        await asyncio.sleep(0)  # and its done callbacks run
        assert first.cancelled()
        assert registry._lingers.get(channel) is second
        await registry.close()
        assert second.cancelled()
        assert registry.channels() == []


def make_registry(http: aiohttp.ClientSession, max_waiting: int = 32) -> StreamRegistry:
    # One engine at most and none running: every new channel waits for one (none will come).
    pool = EnginePool(max_streams_per_engine=1, max_engines=1, provision_wait_s=30)
    return StreamRegistry(
        pool=pool,
        client=EngineClient(http, api_timeout_s=1, stop_timeout_s=1),
        timeouts=Timeouts(first_data_s=1, stall_s=1, keepalive_s=1),
        window_bytes=1 << 20,
        linger_s=60,
        max_waiting=max_waiting,
    )


async def test_a_channel_whose_only_player_left_while_it_waits_for_an_engine_ends_at_once() -> None:
    async with aiohttp.ClientSession() as http:
        registry = make_registry(http)
        left = asyncio.Event()
        player = asyncio.create_task(_enter(registry, CONTENT, _until(left)))
        await asyncio.sleep(0.05)
        [channel] = registry.channels()
        assert channel.starting
        assert channel.players == 1
        left.set()
        with pytest.raises(PlayerLeft):
            await player
        # Its claim wait was abandoned (the pool waits 30 s) and no linger holds it for nobody.
        assert registry.channels() == []
        assert registry._lingers == {}
        await _all_ended(registry)
        assert registry.waiting() == 0
        await registry.close()


async def test_a_channel_keeps_waiting_while_one_of_its_players_remains() -> None:
    async with aiohttp.ClientSession() as http:
        registry = make_registry(http)
        left = asyncio.Event()
        staying = asyncio.create_task(_enter(registry, CONTENT, _until(asyncio.Event())))
        leaving = asyncio.create_task(_enter(registry, CONTENT, _until(left)))
        await asyncio.sleep(0.05)
        left.set()
        with pytest.raises(PlayerLeft):
            await leaving
        [channel] = registry.channels()
        assert channel.players == 1
        assert channel.starting
        assert not channel.stopping
        staying.cancel()
        await asyncio.gather(staying, return_exceptions=True)
        await registry.close()


async def test_new_channels_beyond_the_waiting_bound_are_refused_and_joins_are_not() -> None:
    async with aiohttp.ClientSession() as http:
        registry = make_registry(http, max_waiting=2)
        forever = _until(asyncio.Event())
        others = [ContentRef(InputKind.CONTENT_ID, c * 40) for c in "bc"]
        waiting = [asyncio.create_task(_enter(registry, c, forever)) for c in others]
        await asyncio.sleep(0.05)
        assert registry.waiting() == 2
        with pytest.raises(TooManyStarting) as refused:
            await _enter(registry, CONTENT, forever)
        assert refused.value.retry_after_s > 0
        joiner = asyncio.create_task(_enter(registry, others[0], forever))
        await asyncio.sleep(0.05)
        assert not joiner.done()
        assert [c.players for c in registry.channels()] == [2, 1]
        for task in (*waiting, joiner):
            task.cancel()
        await asyncio.gather(*waiting, joiner, return_exceptions=True)
        # Everyone left: the bound counts the channels still starting, not the ones ended.
        await _all_ended(registry)
        assert registry.waiting() == 0
        await registry.close()


def _until(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def gone() -> None:
        await event.wait()

    return gone


async def _all_ended(registry: StreamRegistry) -> None:
    await wait_until(lambda: not registry.running(), timeout_s=1, interval_s=0.01)


async def _enter(
    registry: StreamRegistry, content: ContentRef, gone: Callable[[], Awaitable[None]]
) -> None:
    async with registry.play(content, gone):
        raise AssertionError("no engine exists: the channel cannot start")
