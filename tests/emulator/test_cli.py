"""The command line and the process: engine flags, knobs from flags and env, signals, crash."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from acestream_gateway.emulator.cli import build_parser, parse_args
from acestream_gateway.emulator.config import KnobError, Knobs, knob_fields
from tests.support import ROOT, free_port

from .helpers import CONTENT_ID


def test_engine_command_line_sets_port_and_bind_all_and_ignores_unknown_flags() -> None:
    argv = [
        "--client-console",
        "--http-port",
        "7001",
        "--bind-all",
        "--port",
        "8700",
        "--live-cache-type",
        "memory",
        "--live-buffer",
        "25",
        "--cache-dir",
        "/tmp/x",
        "--log-debug",
        "1",
    ]
    options, knobs, ignored = parse_args(argv, {})
    assert (options.http_port, options.bind_all, options.host) == (7001, True, "0.0.0.0")
    assert options.crash_exits
    assert knobs == Knobs()
    assert ignored == ["--cache-dir", "/tmp/x", "--log-debug", "1"]


def test_arguments_are_read_from_an_at_file_one_a_line(tmp_path: Path) -> None:
    conf = tmp_path / "acestream.conf"
    conf.write_text("--http-port=7003\n--https-port=7004\n--bind-all\n")
    options, _, ignored = parse_args(["--client-console", f"@{conf}"], {})
    assert (options.http_port, options.bind_all) == (7003, True)
    assert ignored == []


def test_an_empty_at_file_leaves_the_engine_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "acestream.conf"
    conf.write_text("")
    options, _, _ = parse_args(["--client-console", f"@{conf}"], {})
    assert (options.http_port, options.bind_all) == (6878, False)


def test_a_missing_at_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--client-console", f"@{tmp_path / 'missing.conf'}"], {})
    assert exited.value.code == 2


def test_without_bind_all_the_engine_filters_clients() -> None:
    options, _, _ = parse_args(["--client-console", "--http-port", "7001"], {})
    assert not options.bind_all


def test_knobs_come_from_the_environment_and_the_command_line_wins() -> None:
    env = {
        "EMULATOR_PREBUFFER_S": "never",
        "EMULATOR_BURST_BYTES": "1_000_000",
        "EMULATOR_UNKNOWN_IDS": "aa, BB",
        "EMULATOR_VERSION": "3.1.0",
        "EMULATOR_CONTROL_PORT": "7002",
        "EMULATOR_NETWORK_CONNECTED": "false",
    }
    options, knobs, _ = parse_args(["--emu-version", "3.2.11"], env)
    assert math.isinf(knobs.prebuffer_s)
    assert knobs.burst_bytes == 1_000_000
    assert knobs.unknown_ids == frozenset({"aa", "bb"})
    assert knobs.network_connected is False
    assert (knobs.version, knobs.version_code) == ("3.2.11", 3021100)
    assert options.control_port == 7002


@pytest.mark.parametrize(
    "argv", [["--emu-prebuffer-s", "soon"], ["--emu-refuse", "maybe"], ["--emu-version", "3"]]
)
def test_a_bad_knob_value_is_a_usage_error(argv: Sequence[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, {})
    assert exited.value.code == 2


def test_help_documents_every_knob_with_its_flag_and_environment_name() -> None:
    text = " ".join(build_parser().format_help().split())
    for knob in knob_fields():
        assert f"--emu-{knob.name.replace('_', '-')}" in text
        assert f"EMULATOR_{knob.name.upper()}" in text
    assert "/emulator/control" in text


def test_knob_updates_are_validated_as_a_whole() -> None:
    with pytest.raises(KnobError):
        Knobs().updated({"keyframe_interval_s": 0})
    with pytest.raises(KnobError):
        Knobs().updated({"write_interval_s": 0})
    assert Knobs().updated({"end_after_s": None}).end_after_s == math.inf


@pytest.fixture
def engine_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn(started: list[subprocess.Popen[bytes]], port: int, *extra: str) -> None:
    argv = ["--client-console", "--http-port", str(port), "--bind-all", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "acestream_gateway.emulator", *argv],
        cwd=ROOT,
        env={**os.environ, "EMULATOR_PREBUFFER_S": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(proc)


async def wait_up(http: aiohttp.ClientSession, port: int) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                url = f"http://127.0.0.1:{port}/webui/api/service?method=get_version"
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_sigterm_stops_the_process_promptly_even_with_a_reader_waiting(
    engine_process: list[subprocess.Popen[bytes]], http: aiohttp.ClientSession
) -> None:
    port = free_port()
    spawn(engine_process, port, "--emu-dead-ids", CONTENT_ID)
    await wait_up(http, port)
    url = f"http://127.0.0.1:{port}/ace/getstream?id={CONTENT_ID}"
    reader = asyncio.create_task(http.get(url))  # held forever: a dead channel
    await asyncio.sleep(0.5)
    started = time.monotonic()
    engine_process[0].send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(engine_process[0].wait, 10)
    assert code == 0
    assert time.monotonic() - started < 3
    with pytest.raises(aiohttp.ClientError):
        await reader


async def test_a_crash_ends_the_process_at_once(
    engine_process: list[subprocess.Popen[bytes]], http: aiohttp.ClientSession
) -> None:
    port = free_port()
    spawn(engine_process, port)
    await wait_up(http, port)
    url = f"http://127.0.0.1:{port}/emulator/control"
    async with http.post(url, json={"crash": True}) as resp:
        assert resp.status == 200
    code = await asyncio.to_thread(engine_process[0].wait, 10)
    assert code == 1
