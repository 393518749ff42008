"""The heap trimmer: soon after a channel ended, never more often than its interval, and always
once after the last ask."""

from __future__ import annotations

import asyncio

from acestream_gateway.streaming.heap import HeapTrimmer, malloc_trim


async def test_asks_within_the_interval_make_one_trim_after_it() -> None:
    trims: list[float] = []
    loop = asyncio.get_running_loop()
    trimmer = HeapTrimmer(min_interval_s=0.2, trim=lambda: trims.append(loop.time()))
    started = loop.time()
    trimmer.request()
    await asyncio.sleep(0.01)
    assert len(trims) == 1  # the first ask trims at once
    for _ in range(5):
        trimmer.request()
        await asyncio.sleep(0.01)
    assert len(trims) == 1
    await asyncio.sleep(0.3)
    assert len(trims) == 2  # the asks in between made one trim, once the interval passed
    assert trims[1] - trims[0] >= 0.2 - 0.01
    assert trims[0] - started < 0.1
    trimmer.close()


async def test_closing_cancels_a_pending_trim() -> None:
    trims: list[None] = []
    trimmer = HeapTrimmer(min_interval_s=0.1, trim=lambda: trims.append(None))
    trimmer.request()
    await asyncio.sleep(0.01)
    trimmer.request()
    trimmer.close()
    await asyncio.sleep(0.2)
    assert trims == [None]


def test_the_c_library_trim_is_found_and_runs_here() -> None:
    trim = malloc_trim()
    assert trim is not None  # glibc, as in the gateway's image
    trim()
