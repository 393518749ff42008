"""Fault knobs, at start and at run time: end, stall, refuse, slow answers, hanging stop, crash."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from acestream_gateway.emulator.server import Emulator

from .conftest import StartEmulator
from .helpers import (
    control,
    get_json,
    open_stream,
    read_at_least,
    read_for,
    read_to_eof,
    start_session,
    stats,
)

UNKNOWN = {"response": None, "error": "unknown playback session id"}


async def answers(url: str) -> bool:
    """Whether a new connection gets a version answer (never a pooled one)."""
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as fresh:
        try:
            async with fresh.get(url + "/webui/api/service?method=get_version") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False


async def test_end_after_ends_the_stream_and_the_session(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(end_after_s=0.4)
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        started = time.monotonic()
        await read_to_eof(resp)
        assert 0.3 < time.monotonic() - started < 3
    assert await get_json(http, session["stat_url"]) == UNKNOWN
    counters = await stats(http, emulator)
    assert (counters["sessions_ended"], counters["sessions_active"]) == (1, 0)


async def test_stall_after_stops_the_data_but_keeps_the_connection_open(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(stall_after_s=0.3)
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        assert await read_for(resp, 0.8) >= 188_000
        assert await read_for(resp, 0.8) == 0
        assert not resp.content.at_eof()
    assert (await get_json(http, session["stat_url"]))["error"] is None


async def test_a_stall_cuts_the_burst_short(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(stall_after_s=0, burst_bytes=5_000_000)
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        assert resp.status == 200
        assert await read_for(resp, 0.5) == 0


async def test_a_stall_set_at_run_time_freezes_playing_streams_until_lifted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        await read_at_least(resp, 188_000)
        await control(http, emulator, stall_after_s=0)
        await read_for(resp, 0.3)  # what was already on its way
        assert await read_for(resp, 0.6) == 0
        await control(http, emulator, stall_after_s="never")
        resumed = await read_for(resp, 1.0)
    # 2 Mbit/s is 250 kB/s: the stream resumes at the bitrate, without a catch-up burst.
    assert 150_000 < resumed < 350_000


async def test_an_end_set_at_run_time_ends_playing_streams(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        await read_at_least(resp, 188_000)
        await control(http, emulator, end_after_s=0)
        await read_to_eof(resp)
    assert await get_json(http, session["stat_url"]) == UNKNOWN


async def test_end_sessions_action_ends_every_session_now(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        await read_at_least(resp, 1000)
        answer = await control(http, emulator, end_sessions=True)
        await read_to_eof(resp)
    assert answer["sessions_ended"] == 1
    assert (await stats(http, emulator))["sessions_active"] == 0


async def test_refuse_close_refuses_new_connections_until_reopened(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        await read_at_least(resp, 1000)
        await control(http, emulator, refuse="close")
        assert not await answers(emulator.url)
        assert await read_for(resp, 0.3) > 0  # connections already made go on
    await control(http, emulator, refuse="off")
    assert await answers(emulator.url)


async def test_refuse_reset_resets_engine_requests_but_not_the_control_path(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    await control(http, emulator, refuse="reset")
    assert not await answers(emulator.url)
    async with aiohttp.ClientSession() as fresh:
        url = emulator.url + "/emulator/control"
        async with fresh.post(url, json={"refuse": "off"}) as resp:
            assert resp.status == 200
    assert await answers(emulator.url)


async def test_refuse_at_start_leaves_the_control_port_open(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(refuse="close")
    assert not await answers(emulator.url)
    await control(http, emulator, refuse="off")
    assert await answers(emulator.url)


async def test_slow_json_answers_can_be_switched_on_at_run_time(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    await control(http, emulator, json_delay_s=0.5)
    started = time.monotonic()
    await start_session(http, emulator)
    assert time.monotonic() - started >= 0.45


async def test_a_hanging_stop_answers_late_and_acts_even_if_the_caller_gave_up(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(stop_delay_s=0.6)
    session = await start_session(http, emulator)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await get_json(http, session["command_url"] + "?method=stop")
    assert (await get_json(http, session["stat_url"]))["error"] is None
    await asyncio.sleep(0.7)
    assert await get_json(http, session["stat_url"]) == UNKNOWN
    assert (await stats(http, emulator))["sessions_stopped"] == 1


async def test_a_stop_that_never_answers_never_stops(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(stop_delay_s="never")
    session = await start_session(http, emulator)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await get_json(http, session["command_url"] + "?method=stop")
    assert (await get_json(http, session["stat_url"]))["error"] is None


async def test_crash_drops_every_connection_and_refuses_new_ones(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    async with await open_stream(http, session["playback_url"]) as resp:
        await read_at_least(resp, 1000)
        await control(http, emulator, crash=True)
        # The body ends with the connection, so aiohttp may see the reset as the end of it.
        with contextlib.suppress(aiohttp.ClientError):
            await read_to_eof(resp)
    assert emulator.crashed
    assert not await answers(emulator.url)
    assert not await answers(emulator.control_url)


async def test_crash_after_kills_the_engine_on_time(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(crash_after_s=0.5)
    assert await answers(emulator.url)
    await asyncio.sleep(0.8)
    assert emulator.crashed
    assert not await answers(emulator.url)


async def test_control_shows_the_knobs(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    knobs = (await get_json(http, emulator.control_url + "/emulator/control"))["knobs"]
    assert knobs["prebuffer_s"] == 0
    assert knobs["end_after_s"] == "never"
    assert knobs["unknown_ids"] == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"no_such_knob": 1}, "unknown knob 'no_such_knob'"),
        ({"prebuffer_s": -1}, "prebuffer_s: expected seconds >= 0 or 'never', got -1"),
        ({"refuse": "sometimes"}, "refuse: expected one of off, close, reset, got 'sometimes'"),
        ({"bitrate_bps": 1000}, "bitrate_bps/keyframe_interval_s: "),
        ([1, 2], "body must be a JSON object"),
    ],
)
async def test_control_rejects_bad_changes_and_keeps_the_knobs(
    emulator: Emulator, http: aiohttp.ClientSession, body: object, error: str
) -> None:
    async with http.post(emulator.control_url + "/emulator/control", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith(error)
    assert emulator.knobs.prebuffer_s == 0
