"""What a channel leaves behind once it has ended: nothing. The gateway in-process with engine
emulators as local processes; channels are opened by players and closed again, many times.

Nothing of an ended channel may wait for the garbage collector: a reference cycle is freed only
by a full collection, which may come minutes later, and until then it holds everything the
channel held (its broadcast window, its reader, its players' sockets). Counted with the
collector off, so a cycle shows as objects still alive."""

from __future__ import annotations

import asyncio
import gc
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp.test_utils import TestServer

from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.streaming.broadcast import Broadcast
from acestream_gateway.streaming.channel import Channel
from acestream_gateway.streaming.coalesce import Coalescer
from tests.integration.local import Emulator, gateway, settings, stream_url
from tests.support import wait_until

STREAM = {"prebuffer_s": "0.1", "burst_bytes": "188000", "bitrate_bps": "2000000"}


def channel_id(n: int) -> str:
    return hashlib.sha1(f"churn {n}".encode()).hexdigest()


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def alive(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def play_and_leave(server: TestServer, http: aiohttp.ClientSession, n: int) -> None:
    """Three players watch a new channel for a moment, then all leave; return once it ended."""
    url = stream_url(server, channel_id(n))
    responses = [await http.get(url) for _ in range(3)]
    for response in responses:
        assert response.status == 200
        await response.content.readexactly(188 * 100)
        response.close()
    registry = server.app[REGISTRY]
    await wait_until(lambda: not registry.running() and not registry.retirer.pending, 10, 0.02)


async def test_ended_channels_leave_nothing_behind_for_the_garbage_collector(
    emulators: Callable[..., Emulator],
) -> None:
    engines = [emulators(**STREAM) for _ in range(2)]
    async with (
        gateway(settings(stream_linger_s=0.01), *engines) as server,
        aiohttp.ClientSession() as http,
    ):
        await play_and_leave(server, http, 0)  # what is made once, at the first channel
        with collector_off():
            for n in range(1, 11):
                await play_and_leave(server, http, n)
            await asyncio.sleep(0.1)
            left = {kind.__name__: alive(kind) for kind in (Channel, Broadcast, Coalescer)}
        assert left == {"Channel": 0, "Broadcast": 0, "Coalescer": 0}
        registry = server.app[REGISTRY]
        assert registry.channels() == []
        assert registry._lingers == {}
        assert server.app[POOL].capacity().used == 0
