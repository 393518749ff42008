"""The session journal against in-process engine emulators: every session is on disk before its
start request reaches the engine, and crossed out once stopped; a start ends what a dead gateway
left (stopped by its command URL, or found by its pid when its answer never came), and says which
engines it cannot account for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from acestream_gateway.emulator.config import EngineOptions, Knobs
from acestream_gateway.emulator.server import Emulator
from acestream_gateway.engines.client import EngineClient, EngineNotConnected, EngineTimeout
from acestream_gateway.engines.journal import (
    MAX_RECOVERY_ATTEMPTS,
    SessionJournal,
    journal_path,
    read_journal,
)
from acestream_gateway.engines.model import ContentRef, EngineAddress, InputKind
from acestream_gateway.engines.recovery import end_left_sessions, load_left_sessions
from acestream_gateway.tasks import Supervisor
from tests.support import wait_until

CHANNELS = [ContentRef(InputKind.CONTENT_ID, f"{i:040x}") for i in range(1, 4)]
NOWHERE = EngineAddress("127.0.0.1", 9)  # the discard port: nothing listens on loopback


@pytest.fixture
async def engines() -> AsyncIterator[Callable[..., Awaitable[Emulator]]]:
    started: list[Emulator] = []

    async def start(**knobs: object) -> Emulator:
        options = EngineOptions(http_port=0, bind_all=True, host="127.0.0.1")
        emulator = Emulator(options, Knobs().updated(knobs))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.close()


class Gateway:
    """What of a gateway run the journal concerns: a journal with its writer, and a client."""

    def __init__(self, path: Path, http: aiohttp.ClientSession) -> None:
        self.left = load_left_sessions(path)
        self.journal = SessionJournal(path, self.left.entries)
        self.client = EngineClient(http, api_timeout_s=2, stop_timeout_s=2, journal=self.journal)
        self.tasks = Supervisor("test gateway")
        self.tasks.spawn_loop(self.journal.run, name="session journal writer")

    async def start_up(self) -> None:
        await end_left_sessions(self.left, self.journal, self.client, find_timeout_s=2)
        await self.journal.flush()

    async def crash(self) -> None:
        """Die without a word: the writer stops, nothing is stopped or written any more."""
        await self.tasks.close()


@pytest.fixture
async def run(state_dir: Path) -> AsyncIterator[Callable[[], Gateway]]:
    path = journal_path(state_dir, "test")
    async with aiohttp.ClientSession() as http:
        runs: list[Gateway] = []

        def new_run() -> Gateway:
            runs.append(Gateway(path, http))
            return runs[-1]

        yield new_run
        for gateway in runs:
            await gateway.tasks.close()


def address(emulator: Emulator) -> EngineAddress:
    return EngineAddress("127.0.0.1", emulator.port)


def live_pids(emulator: Emulator) -> list[str]:
    sessions: list[dict[str, Any]] = emulator.stats()["sessions"]  # type: ignore[assignment]
    return [s["pid"] for s in sessions]


async def test_a_session_is_on_disk_before_its_start_request_reaches_the_engine(
    state_dir: Path,
) -> None:
    path = journal_path(state_dir, "test")
    seen: list[list[str]] = []

    async def getstream(request: web.Request) -> web.Response:
        seen.append([e.pid for e in read_journal(path) or []])
        return web.json_response({"response": None, "error": "no such content"})

    app = web.Application()
    app.router.add_get("/ace/getstream", getstream)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        journal = SessionJournal(path)
        tasks = Supervisor("test")
        tasks.spawn_loop(journal.run, name="session journal writer")
        client = EngineClient(http, api_timeout_s=2, stop_timeout_s=2, journal=journal)
        engine = EngineAddress("127.0.0.1", server.port or 0)
        with pytest.raises(Exception, match="refused"):
            await client.start_session(engine, CHANNELS[0], "pid-1")
        await journal.flush()
        await tasks.close()
    assert seen == [["pid-1"]]
    assert read_journal(path) == [], "a refused start made no session: crossed out"


async def test_stopped_sessions_are_crossed_out_and_a_clean_start_trusts_the_journal(
    engines: Callable[..., Awaitable[Emulator]], run: Callable[[], Gateway]
) -> None:
    engine = await engines()
    first = run()
    await first.start_up()
    assert not first.left.trusted, "no journal yet: engines found now cannot be accounted for"
    sessions = [
        await first.client.start_session(address(engine), c, f"p{i}")
        for i, c in enumerate(CHANNELS)
    ]
    await first.journal.flush()
    assert sorted(e.pid for e in read_journal(first.journal.path) or []) == ["p0", "p1", "p2"]
    assert all(e.command_url for e in read_journal(first.journal.path) or [])
    for session in sessions:
        await first.client.stop_session(session)
    await first.journal.flush()
    await first.crash()
    assert read_journal(first.journal.path) == []
    second = run()
    await second.start_up()
    assert second.left.trusted
    assert second.left.accounts_for(address(engine))


async def test_a_start_ends_every_session_a_crashed_run_left(
    engines: Callable[..., Awaitable[Emulator]], run: Callable[[], Gateway]
) -> None:
    engine, slow = await engines(), await engines()
    first = run()
    await first.start_up()
    for i, channel in enumerate(CHANNELS):
        await first.client.start_session(address(engine), channel, f"p{i}")
    # A start whose answer never came: the engine made the session, the gateway never heard.
    await slow.update_knobs({"json_delay_s": 1})
    with pytest.raises(EngineTimeout):
        await first.client.start_session(address(slow), CHANNELS[0], "lost", timeout_s=0.3)
    await first.crash()
    await slow.update_knobs({"json_delay_s": 0})
    await wait_until(lambda: live_pids(slow) == ["lost"], timeout_s=5)
    assert sorted(live_pids(engine)) == ["p0", "p1", "p2"]

    second = run()
    await second.start_up()
    assert live_pids(engine) == []
    assert live_pids(slow) == []
    assert second.left.accounts_for(address(engine))
    assert second.left.accounts_for(address(slow))
    assert read_journal(second.journal.path) == []


async def test_an_engine_whose_left_sessions_cannot_be_ended_is_unaccounted_until_they_are(
    engines: Callable[..., Awaitable[Emulator]], run: Callable[[], Gateway]
) -> None:
    engine = await engines()
    first = run()
    await first.start_up()
    await first.client.start_session(address(engine), CHANNELS[0], "p0")
    # A session on an engine that no longer answers (its start went out, then the engine hung).
    await first.journal.starting(NOWHERE, CHANNELS[1], "unreachable")
    await first.crash()

    for attempt in range(1, MAX_RECOVERY_ATTEMPTS + 1):
        later = run()
        await later.start_up()
        assert live_pids(engine) == []
        assert later.left.accounts_for(address(engine))
        assert not later.left.accounts_for(NOWHERE)
        kept = read_journal(later.journal.path) or []
        if attempt < MAX_RECOVERY_ATTEMPTS:
            assert [(e.pid, e.attempts) for e in kept] == [("unreachable", attempt)]
        else:
            assert kept == [], "given up after a few starts (its engine was replaced meanwhile)"
        await later.crash()


async def test_a_corrupt_journal_is_set_aside_and_accounts_for_no_engine(
    engines: Callable[..., Awaitable[Emulator]], run: Callable[[], Gateway], state_dir: Path
) -> None:
    engine = await engines()
    path = journal_path(state_dir, "test")
    path.write_text('{"format": 1, "sessions": [{"pid": 3}]')
    gateway = run()
    await gateway.start_up()
    assert not gateway.left.trusted
    assert not gateway.left.accounts_for(address(engine))
    assert path.with_name(path.name + ".corrupt").exists()
    assert json.loads(path.read_text()) == {"format": 1, "sessions": []}


async def test_a_start_that_never_reached_an_engine_is_crossed_out_one_that_timed_out_is_kept(
    engines: Callable[..., Awaitable[Emulator]], run: Callable[[], Gateway]
) -> None:
    slow = await engines(json_delay_s=1)
    gateway = run()
    await gateway.start_up()
    with pytest.raises(EngineNotConnected):
        await gateway.client.start_session(NOWHERE, CHANNELS[0], "never-sent")
    with pytest.raises(EngineTimeout):
        await gateway.client.start_session(address(slow), CHANNELS[1], "may-exist", timeout_s=0.2)
    await gateway.journal.flush()
    assert [e.pid for e in read_journal(gateway.journal.path) or []] == ["may-exist"]
