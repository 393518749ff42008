"""The whole run: start the emulator and the load generator, then for each player count measure
cfanout and then a fresh gateway back to back, so their figures are comparable.

Layout on a two-core machine: the server under test (gateway or cfanout) alone on one core, the
players, the emulator and this driver on the other, so the server's CPU time is its own and the
load side never starves it. Every process is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine, floor, phase, playerctl, procfs
from .engine import Stream
from .processes import Processes

ROOT = Path(__file__).resolve().parent.parent.parent
_WATCHED_EVENTS = ("player_dropped", "player_left", "player_stream_ended", "upstream_stalled")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure, and where the processes run."""

    player_counts: tuple[int, ...]
    stream: Stream
    window_s: float
    settle_max_s: float
    joins: int
    join_gap_s: float
    server_core: int
    load_core: int

    def as_json(self) -> dict[str, Any]:
        return {
            "player_counts": list(self.player_counts),
            "bitrate_bps": self.stream.bitrate_bps,
            "burst_bytes": self.stream.burst_bytes,
            "prebuffer_s": self.stream.prebuffer_s,
            "window_s": self.window_s,
            "joins": self.joins,
            "server_core": self.server_core,
            "load_core": self.load_core,
        }


def run(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Every phase of the plan; raw figures as one JSON-able dict."""
    os.sched_setaffinity(0, {plan.load_core})
    procs = Processes(workdir)
    try:
        return _run(plan, workdir, procs)
    finally:
        procs.close()


def _run(plan: Plan, workdir: Path, procs: Processes) -> dict[str, Any]:
    cfanout = floor.build(ROOT, workdir)
    emulator_port = free_port()
    emulator = procs.start(
        "emulator",
        engine.argv(emulator_port),
        core=plan.load_core,
        env={**os.environ, **plan.stream.env()},
        cwd=ROOT,
    )
    engine.wait_up(emulator_port)
    players = playerctl.Players(
        procs.start("players", playerctl.argv(), core=plan.load_core, cwd=ROOT, pipes=True)
    )
    setup = phase.Setup(
        stream=plan.stream,
        window_s=plan.window_s,
        settle_max_s=plan.settle_max_s,
        joins=plan.joins,
        join_gap_s=plan.join_gap_s,
        players=players,
        emulator_pid=emulator.pid,
    )
    phases: list[dict[str, Any]] = []
    for count in plan.player_counts:
        phases.append(_floor_phase(setup, procs, cfanout, emulator_port, plan, count))
        wait_no_sessions(emulator_port)
        phases.append(_gateway_phase(setup, procs, emulator_port, plan, count))
    return {"phases": phases}


def _gateway_phase(
    setup: phase.Setup, procs: Processes, emulator_port: int, plan: Plan, count: int
) -> dict[str, Any]:
    """A fresh gateway per phase, so its memory figures owe nothing to an earlier phase."""
    port = free_port()
    gateway = procs.start(
        f"gateway-{count}",
        [
            *(sys.executable, "-m", "tests.bench.gateway_runner"),
            *("--port", str(port), "--engine-port", str(emulator_port)),
        ],
        core=plan.server_core,
        cwd=ROOT,
    )
    try:
        wait_http(port, "/health")
        result = phase.run(setup, phase.Target("gateway", gateway.pid, port, _path(count)), count)
        wait_no_sessions(emulator_port)  # the channel lingered, then stopped its session
        result["rss_kib_after_players_left"] = procfs.memory(gateway.pid).rss_kib
    finally:
        procs.stop(gateway)
    result["events"] = count_events(procs.workdir / f"gateway-{count}.log")
    return result


def _floor_phase(
    setup: phase.Setup, procs: Processes, binary: Path, emulator_port: int, plan: Plan, count: int
) -> dict[str, Any]:
    """cfanout on a session of its own (a content of its own), started and stopped here."""
    content = _content_id("cfanout", count)
    session = engine.open_direct(emulator_port, content, pid=f"bench-cfanout-{count}")
    port = free_port()
    proc = procs.start(
        f"cfanout-{count}",
        floor.argv(binary, port, emulator_port, session.content_path),
        core=plan.server_core,
    )
    try:
        wait_listening(port)
        return phase.run(setup, phase.Target("cfanout", proc.pid, port, "/"), count)
    finally:
        procs.stop(proc)
        engine.stop(emulator_port, session)


def _path(count: int) -> str:
    return f"/ace/getstream?id={_content_id('gateway', count)}"


def _content_id(kind: str, count: int) -> str:
    """A content id of its own per phase: each phase starts a fresh engine session (and burst)."""
    return hashlib.sha1(f"bench-{kind}-{count}".encode(), usedforsecurity=False).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:g} s")


def wait_http(port: int, path: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"GET {path} on port {port} did not answer 200 within {timeout_s:g} s")


def wait_no_sessions(emulator_port: int, timeout_s: float = 20.0) -> None:
    """Let the last phase's engine session end (the gateway's linger, then its stop)."""
    deadline = time.monotonic() + timeout_s
    while engine.active_sessions(emulator_port) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the emulator still has sessions after {timeout_s:g} s")
        time.sleep(0.1)


def count_events(log: Path) -> dict[str, int]:
    """How often the gateway logged each watched event so far."""
    counts = dict.fromkeys(_WATCHED_EVENTS, 0)
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line).get("event")
        except ValueError:
            continue
        if event in counts:
            counts[event] += 1
    return counts
