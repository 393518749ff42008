"""The fan-out run: start the emulator and the load generator, then for each case measure
cfanout and then a fresh gateway back to back, so their figures are comparable; then the
gateway alone under a burst of joins, with stalled players, and over join/leave cycles.

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
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import engine, floor, phase, playerctl, procfs
from .cases import Case
from .processes import Processes

ROOT = Path(__file__).resolve().parent.parent.parent
_WATCHED_EVENTS = ("player_dropped", "player_left", "player_stream_ended", "upstream_stalled")
EXTRAS = ("burst", "isolation", "memory")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure, and where the processes run."""

    cases: tuple[Case, ...]
    burst_bytes: int
    prebuffer_s: float
    window_s: float
    settle_max_s: float
    joins: int  # timed joins per gateway case
    floor_joins: int  # and per floor case
    join_gap_s: float
    server_core: int
    load_core: int
    extras: tuple[str, ...] = EXTRAS
    rounds: int = 3  # floor-then-gateway pairs per case with a target (the machine is noisy)
    rounds_other: int = 1  # and per other case
    burst_players: int = 500
    isolation_players: int = 200
    isolation_stalled_share: float = 0.1
    isolation_allowance_s: float = 5.0  # STALL_TIMEOUT_S of that gateway: a write's deadline
    memory_players: int = 1000
    memory_cycles: int = 10
    memory_warmup: int = 3  # cycles first, while the heap grows to its working size
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def rounds_of(self, case: Case) -> int:
        return self.rounds if case.target_ratio is not None else self.rounds_other

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": [c.as_json() for c in self.cases],
            "rounds": self.rounds,
            "rounds_other": self.rounds_other,
            "burst_bytes": self.burst_bytes,
            "prebuffer_s": self.prebuffer_s,
            "window_s": self.window_s,
            "joins": self.joins,
            "floor_joins": self.floor_joins,
            "server_core": self.server_core,
            "load_core": self.load_core,
            "extras": list(self.extras),
            "burst_players": self.burst_players,
            "isolation_players": self.isolation_players,
            "isolation_stalled_share": self.isolation_stalled_share,
            "isolation_allowance_s": self.isolation_allowance_s,
            "memory_players": self.memory_players,
            "memory_cycles": self.memory_cycles,
            "memory_warmup": self.memory_warmup,
        }


@dataclass(slots=True)
class _Run:
    plan: Plan
    procs: Processes
    setup: phase.Setup
    cfanout: Path
    emulator_port: int


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
    env = {
        "EMULATOR_BURST_BYTES": str(plan.burst_bytes),
        "EMULATOR_PREBUFFER_S": str(plan.prebuffer_s),
    }
    emulator = procs.start(
        "emulator", engine.argv(emulator_port), core=plan.load_core, env={**os.environ, **env}
    )
    engine.wait_up(emulator_port)
    players = playerctl.Players(
        procs.start("players", playerctl.argv(), core=plan.load_core, cwd=ROOT, pipes=True)
    )
    setup = phase.Setup(
        window_s=plan.window_s,
        settle_max_s=plan.settle_max_s,
        joins=plan.joins,
        join_gap_s=plan.join_gap_s,
        players=players,
        emulator_pid=emulator.pid,
    )
    state = _Run(plan, procs, setup, cfanout, emulator_port)
    phases: list[dict[str, Any]] = []
    for case in plan.cases:
        _shape(state, case)
        for round_ in range(plan.rounds_of(case)):
            phases.append({**_floor_phase(state, case), "round": round_})
            wait_no_sessions(emulator_port)
            phases.append({**_gateway_phase(state, case, round_), "round": round_})
    extras: dict[str, Any] = {}
    if "burst" in plan.extras:
        extras["burst"] = _burst_phase(state)
    if "isolation" in plan.extras:
        extras["isolation"] = _isolation_phase(state)
    if "memory" in plan.extras:
        extras["memory"] = _memory_phase(state)
    return {"phases": phases, **extras}


def _shape(state: _Run, case: Case) -> None:
    """The emulator streams sessions opened from now on at the case's bitrate and shape."""
    engine.set_knobs(
        state.emulator_port,
        {"bitrate_bps": case.bitrate_bps, "write_interval_s": case.write_interval_s},
    )


def start_gateway(
    state: _Run, name: str, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A fresh gateway process fed by the emulator, pinned to the server core; its port.

    It is the product as it ships, ``acestream-gateway serve``, given the emulator as an engine
    it does not manage (``ENGINE_URLS``): no Docker, nothing test-only in the process measured.
    """
    port = free_port()
    gateway = state.procs.start(
        name,
        [sys.executable, "-m", "acestream_gateway", "serve"],
        core=state.plan.server_core,
        cwd=ROOT,
        env={
            **os.environ,
            "ENGINE_URLS": f"http://127.0.0.1:{state.emulator_port}",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "STREAM_LINGER_S": "1",
            "LOG_FORMAT": "json",
            # One emulator carries every channel of a case (the floor's sessions are on it too).
            "MAX_STREAMS_PER_ENGINE": "200",
            # Every player of the bench connects from the one loopback address.
            "MAX_CONNECTIONS_PER_CLIENT": "100000",
            **state.plan.extra_env,
            **(env or {}),
        },
    )
    wait_http(port, "/health")
    return gateway, port


def _gateway_phase(state: _Run, case: Case, round_: int) -> dict[str, Any]:
    """A fresh gateway per phase, so its memory figures owe nothing to an earlier phase."""
    name = f"gateway-{case.name}-{round_}"
    gateway, port = start_gateway(state, name)
    try:
        endpoints = tuple(
            phase.Endpoint(port, _path("gateway", case, i)) for i in range(case.channels)
        )
        target = phase.Target("gateway", (gateway.pid,), endpoints)
        result = phase.run(state.setup, target, case)
        wait_no_sessions(state.emulator_port)  # the channels lingered, then stopped
        result["rss_kib_after_players_left"] = procfs.memory(gateway.pid).rss_kib
    finally:
        state.procs.stop(gateway)
    result["events"] = count_events(state.procs.workdir / f"{name}.log")
    return result


def _floor_phase(state: _Run, case: Case) -> dict[str, Any]:
    """One cfanout per channel, each on a session of its own, started and stopped here."""
    sessions, procs, endpoints = [], [], []
    try:
        for index in range(case.channels):
            content = _content_id("cfanout", case, index)
            pid = f"bench-cfanout-{case.name}-{index}"
            session = engine.open_direct(state.emulator_port, content, pid=pid)
            sessions.append(session)
            port = free_port()
            procs.append(
                state.procs.start(
                    f"cfanout-{case.name}-{index}",
                    floor.argv(state.cfanout, port, state.emulator_port, session.content_path),
                    core=state.plan.server_core,
                )
            )
            endpoints.append(phase.Endpoint(port, "/"))
        for endpoint in endpoints:
            wait_listening(endpoint.port)
        target = phase.Target("cfanout", tuple(p.pid for p in procs), tuple(endpoints))
        return phase.run(state.setup, target, case, joins=state.plan.floor_joins)
    finally:
        for proc in procs:
            state.procs.stop(proc)
        for session in sessions:
            engine.stop(state.emulator_port, session)


def _burst_phase(state: _Run) -> dict[str, Any]:
    """Many players ask for one channel nobody watches, at the same instant."""
    plan = state.plan
    case = Case("blocks", 4_000_000, 1, plan.burst_players)
    _shape(state, case)
    gateway, port = start_gateway(state, "gateway-burst")
    try:
        started_before = engine.stats(state.emulator_port)["sessions_started"]
        answer = state.setup.players.open_at_once(
            port, _path("burst", case, 0), case.players, wait_s=plan.prebuffer_s + 10
        )
        sessions = engine.stats(state.emulator_port)["sessions_started"] - started_before
        state.setup.players.close()
        wait_no_sessions(state.emulator_port)
    finally:
        state.procs.stop(gateway)
    data = [d for d in answer["data_s"] if d is not None]
    return {
        "players": case.players,
        "opened": answer["opened"],
        "errors": answer["errors"],
        "engine_sessions": sessions,
        "prebuffer_s": plan.prebuffer_s,
        "streaming": len(data),
        "within_prebuffer_plus_1s": sum(1 for d in data if d <= plan.prebuffer_s + 1.0),
        "data_s_median": round(statistics.median(data), 3) if data else None,
        "data_s_max": round(max(data), 3) if data else None,
    }


def _isolation_phase(state: _Run) -> dict[str, Any]:
    """The same players with and without 10 % more that never read, on one gateway."""
    plan = state.plan
    env = {"STALL_TIMEOUT_S": str(plan.isolation_allowance_s)}
    gateway, port = start_gateway(state, "gateway-isolation", env)
    stalled = round(plan.isolation_players * plan.isolation_stalled_share)
    results: dict[str, Any] = {"stalled": stalled, "allowance_s": plan.isolation_allowance_s}
    try:
        for label, count in (("without", 0), ("with", stalled)):
            case = Case("pieces", 4_000_000, 1, plan.isolation_players)
            _shape(state, case)
            endpoint = phase.Endpoint(port, _path(f"isolation-{label}", case, 0))
            target = phase.Target("gateway", (gateway.pid,), (endpoint,))
            if count:
                results[label] = _with_stalled(state, target, case, count)
            else:
                results[label] = phase.run(state.setup, target, case, joins=0)
            wait_no_sessions(state.emulator_port)
    finally:
        state.procs.stop(gateway)
    results["events"] = count_events(state.procs.workdir / "gateway-isolation.log")
    return results


def _with_stalled(state: _Run, target: phase.Target, case: Case, stalled: int) -> dict[str, Any]:
    """One window with stalled players among the readers, then wait for them to be dropped."""
    players = state.setup.players
    endpoint = target.endpoints[0]
    try:
        players.open(endpoint.port, endpoint.path, case.players, stalled=stalled)
        phase._settle(state.setup, case)
        started = time.monotonic()
        window = phase._window(state.setup, target, case)
        deadline = time.monotonic() + state.plan.isolation_allowance_s + 20
        counts = players.counts()
        while counts["stalled_closed"] < stalled and time.monotonic() < deadline:
            time.sleep(0.5)
            counts = players.counts()
        window["stalled_closed_at_end"] = counts["stalled_closed"]
        window["stalled_dropped_within_s"] = round(time.monotonic() - started, 1)
        window["readers_dropped"] = len(counts["closed"])
    finally:
        players.close()
    return window


def _memory_phase(state: _Run) -> dict[str, Any]:
    """All the players join and leave again, over and over: RSS after each join and leave."""
    plan = state.plan
    gateway, port = start_gateway(state, "gateway-memory")
    players = state.setup.players
    cycles: list[dict[str, int]] = []
    try:
        idle = procfs.memory(gateway.pid).rss_kib
        for cycle in range(plan.memory_warmup + plan.memory_cycles):
            case = Case("blocks", 4_000_000, 1, plan.memory_players)
            _shape(state, case)
            players.open(port, _path("memory", case, cycle % 2), case.players)
            phase._settle(state.setup, case)
            joined = procfs.memory(gateway.pid).rss_kib
            players.close()
            wait_no_sessions(state.emulator_port)
            cycles.append({"joined": joined, "left": procfs.memory(gateway.pid).rss_kib})
    finally:
        state.procs.stop(gateway)
    return {
        "players": plan.memory_players,
        "rss_kib_idle": idle,
        "warmup": cycles[: plan.memory_warmup],
        "cycles": cycles[plan.memory_warmup :],
    }


def _path(kind: str, case: Case, channel: int) -> str:
    return f"/ace/getstream?id={_content_id(kind, case, channel)}"


def _content_id(kind: str, case: Case, channel: int) -> str:
    """A content id of its own per phase and channel: each starts a fresh engine session."""
    key = f"bench-{kind}-{case.name}-{channel}".encode()
    return hashlib.sha1(key, usedforsecurity=False).hexdigest()


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


def wait_no_sessions(emulator_port: int, timeout_s: float = 30.0) -> None:
    """Let the last phase's engine sessions end (the gateway's linger, then its stop)."""
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
