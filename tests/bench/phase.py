"""One measured phase: players on one server (the gateway, or cfanout with one process per
channel), one steady-state window.

The players join, the engine's burst passes (the aggregate rate comes down to N x bitrate), then
the servers' CPU time and every player's byte count are read at the start and the end of the
same window. Afterwards more players join one by one, timed to their first bytes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from . import procfs
from .cases import Case
from .playerctl import Players, PlayersFailed

_POLL_S = 0.5
_MIN_SETTLE_S = 3.0
_RATE_TOLERANCE = 0.15
_BEHIND = 0.9  # a player that got less than this share of the bitrate fell behind
_KEEPS_UP = 0.95  # the target: every player gets at least this share of the bitrate


@dataclass(frozen=True, slots=True)
class Setup:
    """What every phase shares: the window, the joins and the helper processes' pids."""

    window_s: float
    settle_max_s: float
    joins: int
    join_gap_s: float
    players: Players
    emulator_pid: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where some of a phase's players connect: one channel."""

    port: int
    path: str


@dataclass(frozen=True, slots=True)
class Target:
    """The server of one phase: its processes (CPU is summed over them; memory is the first's)
    and one endpoint per channel."""

    kind: str  # "gateway" or "cfanout"
    pids: tuple[int, ...]
    endpoints: tuple[Endpoint, ...]


def run(
    setup: Setup, target: Target, case: Case, *, joins: int | None = None, stalled: int = 0
) -> dict[str, Any]:
    """Measure ``case`` on ``target``; the players have left when this returns. ``stalled``
    players per channel join too and never read."""
    players = setup.players
    rss_before = procfs.memory(target.pids[0])
    procfs.reset_peak(target.pids[0])
    try:
        total = case.total_players
        for endpoint in target.endpoints:  # the answers count every player joined so far
            opened = players.open(endpoint.port, endpoint.path, case.players, stalled=stalled)
        if opened["opened"] != total or opened["statuses"] != {"200": total}:
            raise PlayersFailed(f"{target.kind}: players could not all join: {opened}")
        settle_s, settled = _settle(setup, case)
        window = _window(setup, target, case)
        first = target.endpoints[0]
        count = setup.joins if joins is None else joins
        timed = players.joins(first.port, first.path, count, setup.join_gap_s) if count else []
    finally:
        players.close()
    return {
        "server": target.kind,
        "case": case.as_json(),
        "players": case.total_players,
        "settle_s": round(settle_s, 2),
        "settled": settled,
        "rss_kib_before": rss_before.rss_kib,
        **window,
        "joins": timed,
        "ttfb": ttfb_summary(timed),
    }


def _settle(setup: Setup, case: Case) -> tuple[float, bool]:
    """Wait out the burst: until the aggregate rate is N x bitrate twice in a row (bounded)."""
    expected = case.total_players * case.bytes_per_s
    started = time.monotonic()
    last = setup.players.counts()
    good = 0
    while time.monotonic() - started < setup.settle_max_s:
        time.sleep(_POLL_S)
        now = setup.players.counts()
        rate = (sum(now["bytes"]) - sum(last["bytes"])) / (now["at"] - last["at"])
        last = now
        good = good + 1 if abs(rate / expected - 1) <= _RATE_TOLERANCE else 0
        if good >= 2 and time.monotonic() - started >= _MIN_SETTLE_S:
            return time.monotonic() - started, True
    return time.monotonic() - started, False


def _cpu(target: Target) -> list[procfs.CpuSample]:
    return [procfs.cpu(pid) for pid in target.pids]


def _window(setup: Setup, target: Target, case: Case) -> dict[str, Any]:
    players = setup.players
    first = players.counts()
    cpu0 = _cpu(target)
    load0 = (procfs.cpu(players.pid), procfs.cpu(setup.emulator_pid))
    time.sleep(setup.window_s)
    last = players.counts()
    cpu1 = _cpu(target)
    load1 = (procfs.cpu(players.pid), procfs.cpu(setup.emulator_pid))
    memory = procfs.memory(target.pids[0])
    spent = [b.since(a) for a, b in zip(cpu0, cpu1, strict=True)]
    run_s = sum(s.run_s for s in spent)
    wall_s = spent[0].wall_s
    span = last["at"] - first["at"]
    got = [b - a for a, b in zip(first["bytes"], last["bytes"], strict=True)]
    delivered = sum(got)
    per_player = case.bytes_per_s * span
    behind = [{"player": i, "share": round(g / per_player, 3)} for i, g in enumerate(got)]
    return {
        "window_s": round(span, 3),
        "cpu": {
            "user_s": round(sum(s.user_s for s in spent), 3),
            "sys_s": round(sum(s.sys_s for s in spent), 3),
            "run_s": round(run_s, 4),
            "core_share": round(run_s / wall_s, 4) if wall_s > 0 else 0.0,
        },
        "delivered_bytes": delivered,
        "expected_bytes": round(per_player * len(got)),
        "delivered_share": round(delivered / (per_player * len(got)), 4),
        "throughput_mbit_s": round(delivered * 8 / span / 1e6, 1),
        "cpu_ns_per_byte": round(run_s * 1e9 / delivered, 4) if delivered else None,
        "player_share_min": round(min(got) / per_player, 3),
        "player_share_median": round(statistics.median(got) / per_player, 3),
        "players_keeping_up": sum(1 for g in got if g >= _KEEPS_UP * per_player),
        # Players that got a packet without its sync byte, from their first byte to the window's
        # end (meaningful for the gateway, which starts every player on a packet: cfanout starts
        # a player wherever its next block starts).
        "players_out_of_sync": sum(1 for n in last["out_of_sync"] if n),
        "received_before_window_median": round(statistics.median(first["bytes"])),
        "behind": [b for b in behind if b["share"] < _BEHIND],
        "dropped": sorted(set(last["closed"])),
        "max_gap_ms": round(max(last["max_gap_s"]) * 1000, 1),
        "max_gap_ms_median": round(statistics.median(last["max_gap_s"]) * 1000, 1),
        "stalled": last["stalled"],
        "stalled_closed": last["stalled_closed"],
        "rss_kib": memory.rss_kib,
        "peak_rss_kib": memory.peak_rss_kib,  # since the players began to join
        "load_core": {
            "players_core_share": round(load1[0].since(load0[0]).core_share, 3),
            "emulator_core_share": round(load1[1].since(load0[1]).core_share, 3),
        },
    }


def ttfb_summary(joins: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range of the joins' times to headers and to first body bytes (ms)."""
    ok = [j for j in joins if j.get("first_byte_s") is not None]
    if not ok:
        return {"joins_ok": 0, "joins": len(joins)}
    first = [j["first_byte_s"] * 1000 for j in ok]
    heads = [j["headers_s"] * 1000 for j in ok]
    packets = [j["first_packet"] for j in ok]
    return {
        "joins": len(joins),
        "joins_ok": len(ok),
        "headers_ms_median": round(statistics.median(heads), 1),
        "first_byte_ms_median": round(statistics.median(first), 1),
        "first_byte_ms_min": round(min(first), 1),
        "first_byte_ms_max": round(max(first), 1),
        "starts_on_packet": sum(1 for p in packets if p["sync"]),
        "starts_with_pat": sum(1 for p in packets if p["pid"] == 0),
        "first_pids": sorted({p["pid"] for p in packets if p["pid"] is not None}),
    }


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]
