"""The registry's timers: lingering sessions, zapping back, and tracking every task it starts."""

from __future__ import annotations

import asyncio

import aiohttp

from acestream_gateway.engines.client import EngineClient
from acestream_gateway.engines.model import ContentRef, InputKind
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.streaming.channel import Timeouts
from acestream_gateway.streaming.registry import StreamRegistry

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
        registry._cancel_linger(channel)
        registry._start_linger(channel)  # a player came and went before the first timer ended
        second = registry._lingers[channel]
        await asyncio.gather(first, return_exceptions=True)  # the cancelled timer ends now
        await asyncio.sleep(0)  # and its done callbacks run
        assert first.cancelled()
        assert registry._lingers.get(channel) is second
        await registry.close()
        assert second.cancelled()
        assert registry.channels() == []
