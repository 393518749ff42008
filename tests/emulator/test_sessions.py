"""Session rules: (content, pid) keys, superseding, stop, stat, idle end, and the counters."""

from __future__ import annotations

import asyncio

import aiohttp

from acestream_gateway.emulator.server import Emulator

from .conftest import StartEmulator
from .helpers import (
    CONTENT_ID,
    OTHER_ID,
    control,
    get_json,
    open_stream,
    read_at_least,
    read_to_eof,
    start_session,
    stats,
    wait_for_readers,
)

UNKNOWN = {"response": None, "error": "unknown playback session id"}


async def test_same_content_and_pid_returns_the_running_session(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await start_session(http, emulator, pid="p1")
    again = await start_session(http, emulator, pid="p1")
    assert again == first
    assert (await stats(http, emulator))["sessions_started"] == 1


async def test_a_new_pid_for_the_same_content_supersedes_the_earlier_session(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await start_session(http, emulator, pid="p1")
    reader = await open_stream(http, first["playback_url"])
    await read_at_least(reader, 188_000)

    second = await start_session(http, emulator, pid="p2")

    assert second["playback_session_id"] != first["playback_session_id"]
    await read_to_eof(reader)
    assert await get_json(http, first["stat_url"]) == UNKNOWN
    assert await get_json(http, first["command_url"] + "?method=stop") == UNKNOWN
    assert (await get_json(http, second["stat_url"]))["error"] is None
    counters = await stats(http, emulator)
    assert counters["sessions_superseded"] == 1
    assert counters["sessions_active"] == 1
    assert counters["sessions"][0]["pid"] == "p2"


async def test_reusing_a_pid_for_another_content_supersedes_that_pids_session(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await start_session(http, emulator, id=CONTENT_ID, pid="p1")
    await start_session(http, emulator, id=OTHER_ID, pid="p1")
    assert await get_json(http, first["stat_url"]) == UNKNOWN
    assert (await stats(http, emulator))["sessions_active"] == 1


async def test_different_contents_with_different_pids_play_side_by_side(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await start_session(http, emulator, id=CONTENT_ID, pid="p1")
    second = await start_session(http, emulator, id=OTHER_ID, pid="p2")
    for session in (first, second):
        assert (await get_json(http, session["stat_url"]))["error"] is None
    counters = await stats(http, emulator)
    assert counters["sessions_active"] == counters["max_concurrent_sessions"] == 2
    assert {(s["infohash"], s["pid"]) for s in counters["sessions"]} == {
        (first["infohash"], "p1"),
        (second["infohash"], "p2"),
    }


async def test_stop_ends_the_reader_and_forgets_the_session(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator, pid="p1")
    reader = await open_stream(http, session["playback_url"])
    await read_at_least(reader, 188_000)

    stop = await get_json(http, session["command_url"], params={"method": "stop"})

    assert stop == {"response": "ok", "error": None}
    await read_to_eof(reader)
    assert await get_json(http, session["stat_url"]) == UNKNOWN
    assert await get_json(http, session["command_url"] + "?method=stop") == UNKNOWN
    counters = await stats(http, emulator)
    assert (counters["sessions_stopped"], counters["sessions_active"]) == (1, 0)
    assert counters["readers_active"] == 0


async def test_a_stopped_content_starts_afresh(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await start_session(http, emulator, pid="p1")
    await get_json(http, first["command_url"] + "?method=stop")
    again = await start_session(http, emulator, pid="p1")
    assert again["playback_session_id"] != first["playback_session_id"]


async def test_unknown_command_method_is_an_engine_error(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    session = await start_session(http, emulator)
    answer = await get_json(http, session["command_url"] + "?method=pause")
    assert answer == {"response": None, "error": "unknown method"}


async def test_stat_moves_from_prebuf_to_dl_with_growing_counters(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(prebuffer_s=0.6)
    session = await start_session(http, emulator)
    before = (await get_json(http, session["stat_url"]))["response"]
    await asyncio.sleep(1.2)
    after = (await get_json(http, session["stat_url"]))["response"]

    assert (before["status"], after["status"]) == ("prebuf", "dl")
    assert after["downloaded"] > before["downloaded"]
    assert after["uploaded"] > before["uploaded"]
    assert after["speed_down"] > before["speed_down"] > 0
    for stat in (before, after):
        assert all(type(stat[k]) is int for k in ("peers", "speed_down", "speed_up", "downloaded"))
        assert stat["peers"] > 0
        assert all(type(v) is str for v in stat["livepos"].values())
        assert set(stat["livepos"]) >= {"pos", "live_first", "live_last", "buffer_pieces"}


async def test_stat_can_use_camel_case_speeds(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(stat_camel_case=True)
    session = await start_session(http, emulator)
    stat = (await get_json(http, session["stat_url"]))["response"]
    assert {"speedDown", "speedUp"} <= set(stat)
    assert "speed_down" not in stat


async def test_a_session_nobody_reads_is_ended(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(idle_timeout_s=0.3)
    session = await start_session(http, emulator)
    await asyncio.sleep(1.3)
    assert await get_json(http, session["stat_url"]) == UNKNOWN
    counters = await stats(http, emulator)
    assert (counters["sessions_ended"], counters["sessions_active"]) == (1, 0)


async def test_a_session_being_read_is_not_idle(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(idle_timeout_s=0.3)
    session = await start_session(http, emulator)
    reader = await open_stream(http, session["playback_url"])
    await read_at_least(reader, 188_000)
    await asyncio.sleep(1.3)
    assert (await get_json(http, session["stat_url"]))["error"] is None
    reader.close()


async def test_stats_count_readers_and_maxima_and_can_be_reset(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await start_session(http, emulator, id=CONTENT_ID, pid="p1")
    second = await start_session(http, emulator, id=OTHER_ID, pid="p2")
    readers = [await open_stream(http, s["playback_url"]) for s in (first, second)]
    for reader in readers:
        await read_at_least(reader, 1000)
    counters = await stats(http, emulator)
    assert counters["readers_active"] == counters["max_concurrent_readers"] == 2
    assert [s["readers"] for s in counters["sessions"]] == [1, 1]

    for reader in readers:
        reader.close()
    await wait_for_readers(http, emulator, 0)
    await control(http, emulator, reset_stats=True)
    counters = await stats(http, emulator)
    assert counters["sessions_started"] == 0
    assert counters["max_concurrent_sessions"] == counters["sessions_active"] == 2
    assert counters["readers_active"] == counters["max_concurrent_readers"] == 0
