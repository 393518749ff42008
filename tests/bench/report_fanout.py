"""The fan-out section of the benchmark page: figures per case against the floor, the targets of
the fan-out work (met or not, from the figures), joins, bursts, isolation, memory, and the plot of
cost as work grows. Generated from the figures; it says no more than they show.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .cases import SHAPES, TARGETS
from .phase import percentile
from .scenario import Plan

PLOT_NAME = "bench-fanout-cost.png"
_SHAPE_WORDS = {
    "blocks": "large blocks (one every 100 ms)",
    "pieces": "small pieces (one every 20 ms)",
}


def assemble(
    plan: Plan,
    figures: dict[str, Any],
    *,
    date: str,
    command: str,
    duration_s: float,
    machine: dict[str, object],
) -> dict[str, Any]:
    """The fan-out section's figures."""
    phases: list[dict[str, Any]] = figures["phases"]
    names = list(dict.fromkeys(p["case"]["name"] for p in phases if p["server"] == "gateway"))
    return {
        "date": date,
        "command": command,
        "duration_s": round(duration_s, 1),
        "machine": machine,
        "plan": plan.as_json(),
        "comparison": [compare(phases, name) for name in names],
        "joins": joins_summary(phases),
        **{k: v for k, v in figures.items() if k != "phases"},
        "phases": phases,
    }


def compare(phases: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """One case: the gateway against the floor, over the case's rounds (each a floor phase, then
    a gateway phase). The ratio is the median of the rounds' ratios; delivery figures are the
    worst round's; memory is the first round's."""
    gws = [p for p in phases if p["server"] == "gateway" and p["case"]["name"] == name]
    cfs = [p for p in phases if p["server"] == "cfanout" and p["case"]["name"] == name]
    ratios = [
        gw["cpu_ns_per_byte"] / cf["cpu_ns_per_byte"]
        for gw, cf in zip(gws, cfs, strict=True)
        if gw["cpu_ns_per_byte"] and cf["cpu_ns_per_byte"]
    ]
    gw = gws[0]
    case = gw["case"]
    total = case["total_players"]
    return {
        **case,
        "target_ratio": TARGETS.get((case["channels"], case["players"], case["bitrate_bps"])),
        "rounds": len(gws),
        "gateway_core_share": statistics.median(p["cpu"]["core_share"] for p in gws),
        "cfanout_core_share": statistics.median(p["cpu"]["core_share"] for p in cfs),
        "gateway_ns_per_byte": _median_of(gws, "cpu_ns_per_byte"),
        "cfanout_ns_per_byte": _median_of(cfs, "cpu_ns_per_byte"),
        "ratio": round(statistics.median(ratios), 2) if ratios else None,
        "ratio_min": round(min(ratios), 2) if ratios else None,
        "ratio_max": round(max(ratios), 2) if ratios else None,
        "gateway_throughput_mbit_s": statistics.median(p["throughput_mbit_s"] for p in gws),
        "gateway_delivered_share": min(p["delivered_share"] for p in gws),
        "cfanout_delivered_share": min(p["delivered_share"] for p in cfs),
        "gateway_share_min": min(p["player_share_min"] for p in gws),
        "cfanout_share_min": min(p["player_share_min"] for p in cfs),
        "gateway_keeping_up": min(p["players_keeping_up"] for p in gws),
        "gateway_out_of_sync": max(p.get("players_out_of_sync", 0) for p in gws),
        "gateway_dropped": max(len(p["dropped"]) for p in gws),
        "gateway_max_gap_ms": max(p["max_gap_ms"] for p in gws),
        "cfanout_max_gap_ms": max(p["max_gap_ms"] for p in cfs),
        "gateway_rss_kib_idle": gw["rss_kib_before"],
        "gateway_rss_kib_loaded": gw["rss_kib"],
        "gateway_rss_kib_per_player": round((gw["rss_kib"] - gw["rss_kib_before"]) / total, 1),
        "gateway_rss_kib_after": gw.get("rss_kib_after_players_left"),
    }


def _median_of(phases: list[dict[str, Any]], key: str) -> float | None:
    values = [p[key] for p in phases if p[key] is not None]
    return round(statistics.median(values), 4) if values else None


def joins_summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Every timed join on the gateway, over all cases."""
    joins = [j for p in phases if p["server"] == "gateway" for j in p["joins"]]
    first = [j["first_byte_s"] * 1000 for j in joins if j.get("first_byte_s") is not None]
    packets = [j["first_packet"] for j in joins if j.get("first_byte_s") is not None]
    floor = [
        j["first_byte_s"] * 1000
        for p in phases
        if p["server"] == "cfanout"
        for j in p["joins"]
        if j.get("first_byte_s") is not None
    ]
    if not first:
        return {"joins": len(joins), "ok": 0}
    return {
        "joins": len(joins),
        "ok": len(first),
        "p50_ms": round(percentile(first, 0.5), 1),
        "p99_ms": round(percentile(first, 0.99), 1),
        "max_ms": round(max(first), 1),
        "starts_with_pat": sum(1 for p in packets if p["pid"] == 0),
        "starts_on_packet": sum(1 for p in packets if p["sync"]),
        "floor_joins": len(floor),
        "floor_p50_ms": round(statistics.median(floor), 1) if floor else None,
    }


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _case_words(c: dict[str, Any]) -> str:
    channels = f"{c['channels']} channels x " if c["channels"] > 1 else ""
    return f"{channels}{c['players']} x {c['bitrate_bps'] / 1e6:g} Mbit/s"


def cost_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| upstream | case | delivered | gateway CPU | cfanout CPU | gateway ns/byte "
        "| cfanout ns/byte | gateway / cfanout | rounds: range | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["comparison"]:
        target = c["target_ratio"]
        verdict = "" if target is None else f"≤ {target:g}x: {_met(_ratio_met(c))}"
        rounds = c.get("rounds", 1)
        spread = (
            f"{rounds}: {_num(c['ratio_min'])} to {_num(c['ratio_max'])}x" if rounds > 1 else "1"
        )
        rows.append(
            f"| {c['shape']} | {_case_words(c)} | {c['gateway_throughput_mbit_s']:.0f} Mbit/s "
            f"| {_pct(c['gateway_core_share'])} | {_pct(c['cfanout_core_share'])} "
            f"| {_num(c['gateway_ns_per_byte'], 3)} | {_num(c['cfanout_ns_per_byte'], 3)} "
            f"| **{_num(c['ratio'], 2)}x** | {spread} | {verdict} |"
        )
    return rows


def _ratio_met(c: dict[str, Any]) -> bool:
    keeps_up = c["gateway_keeping_up"] == c["total_players"] and not c.get("gateway_out_of_sync")
    return bool(c["ratio"] is not None and c["ratio"] <= c["target_ratio"] and keeps_up)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def delivery_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| upstream | case | server | delivered / expected | slowest player "
        "| keeping up (≥ 95 %) | valid TS | dropped | longest gap between receptions |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in results["phases"]:
        c = p["case"]
        server = p["server"] + (f", round {p['round'] + 1}" if p.get("round") else "")
        rows.append(
            f"| {c['shape']} | {_case_words(c)} | {server} | {_pct(p['delivered_share'])} "
            f"| {_pct(p['player_share_min'])} | {p['players_keeping_up']} / {c['total_players']} "
            f"| {_valid_ts(p)} | {len(p['dropped'])} | {p['max_gap_ms']:.0f} ms |"
        )
    return rows


def _valid_ts(phase: dict[str, Any]) -> str:
    if phase["server"] != "gateway" or "players_out_of_sync" not in phase:
        return "n/a"
    total = phase["case"]["total_players"]
    return f"{total - phase['players_out_of_sync']} / {total}"


def memory_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| upstream | case | RSS idle (MiB) | RSS loaded (MiB) | growth per player (KiB) "
        "| RSS after they left (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in results["comparison"]:
        after = c["gateway_rss_kib_after"]
        rows.append(
            f"| {c['shape']} | {_case_words(c)} | {_mib(c['gateway_rss_kib_idle'])} "
            f"| {_mib(c['gateway_rss_kib_loaded'])} | {c['gateway_rss_kib_per_player']:.1f} "
            f"| {'n/a' if after is None else _mib(after)} |"
        )
    return rows


def cycles_lines(results: dict[str, Any]) -> list[str]:
    memory = results.get("memory")
    if not memory or not memory["cycles"]:
        return ["Not measured in this run."]
    warmup: list[dict[str, int]] = memory.get("warmup", [])
    cycles = memory["cycles"]
    rows = [
        f"One gateway; {memory['players']} players join (and the burst passes), then all leave "
        f"and the channel stops; {len(warmup)} warm-up cycles while the heap grows to its "
        f"working size (the allocators' arenas, aiohttp's and yarl's bounded caches), then "
        f"{len(cycles)} measured. RSS idle before the first cycle: "
        f"{_mib(memory['rss_kib_idle'])} MiB.",
        "",
        "| cycle | RSS with the players (MiB) | RSS after they left (MiB) |",
        "|---:|---:|---:|",
    ]
    rows += [
        f"| warm-up {i} | {_mib(c['joined'])} | {_mib(c['left'])} |"
        for i, c in enumerate(warmup, 1)
    ]
    rows += [f"| {i} | {_mib(c['joined'])} | {_mib(c['left'])} |" for i, c in enumerate(cycles, 1)]
    growth = cycles[-1]["left"] - cycles[0]["left"]
    first = (warmup or cycles)[0]
    per_player = (first["joined"] - memory["rss_kib_idle"]) / memory["players"]
    rows += [
        "",
        f"- With the players: {per_player:.1f} KiB per player above idle in the first cycle "
        f"(target ≤ 24 KiB: {_met(per_player <= 24)}).",
        f"- After they left: RSS moved by {growth / 1024:+.1f} MiB from the first measured cycle "
        f"to the last (flat: {_met(growth <= 0.02 * cycles[0]['left'])}, within 2 %).",
    ]
    return rows


def burst_lines(results: dict[str, Any]) -> list[str]:
    burst = results.get("burst")
    if not burst:
        return ["Not measured in this run."]
    ok = (
        burst["engine_sessions"] == 1
        and burst["within_prebuffer_plus_1s"] == burst["players"]
        and burst["opened"] == burst["players"]
    )
    return [
        f"{burst['players']} players connect at the same instant to a channel nobody watches "
        f"(engine prebuffer {burst['prebuffer_s']:g} s). Each is timed from its `connect()` to "
        "its first 64 KiB of body (more than keep-alive packets: the stream itself).",
        "",
        f"- Engine sessions started: **{burst['engine_sessions']}**; players connected: "
        f"{burst['opened']} / {burst['players']}; streaming: {burst['streaming']}; within "
        f"prebuffer + 1 s: **{burst['within_prebuffer_plus_1s']} / {burst['players']}**.",
        f"- Time to 64 KiB: median {_num(burst['data_s_median'])} s, "
        f"max {_num(burst['data_s_max'])} s. Target: {_met(ok)}.",
    ]


def isolation_lines(results: dict[str, Any]) -> list[str]:
    iso = results.get("isolation")
    if not iso:
        return ["Not measured in this run."]
    without, with_ = iso["without"], iso["with"]
    readers = with_["behind"]
    dropped = iso["events"]["player_dropped"]
    ok = dropped == iso["stalled"] and not readers and with_["player_share_min"] >= 0.95
    return [
        f"One gateway with `STALL_TIMEOUT_S={iso['allowance_s']:g}` (a stuck player's write "
        f"deadline: its allowance); small pieces, {without['players']} reading players at "
        f"4 Mbit/s, first alone, then on a new channel with {iso['stalled']} more that never "
        "read a byte (10 %). The delay a reading player sees is the longest wait between two "
        "receptions during the window.",
        "",
        "| | delivered / expected | slowest reading player | longest gap, median player "
        "| longest gap, any player | gateway CPU |",
        "|---|---:|---:|---:|---:|---:|",
        f"| without stalled players | {_pct(without['delivered_share'])} "
        f"| {_pct(without['player_share_min'])} | {without['max_gap_ms_median']:.0f} ms "
        f"| {without['max_gap_ms']:.0f} ms | {_pct(without['cpu']['core_share'])} |",
        f"| with {iso['stalled']} stalled | {_pct(with_['delivered_share'])} "
        f"| {_pct(with_['player_share_min'])} | {with_['max_gap_ms_median']:.0f} ms "
        f"| {with_['max_gap_ms']:.0f} ms | {_pct(with_['cpu']['core_share'])} |",
        "",
        f"- Stalled players dropped by the gateway (`player_dropped` in its log): {dropped} / "
        f"{iso['stalled']}; reading players dropped: {with_['readers_dropped']}. Target: "
        f"{_met(ok)}.",
        f"- Seen from the stalled players' side, {with_['stalled_closed_at_end']} / "
        f"{iso['stalled']} connections had left the established state "
        f"{with_['stalled_dropped_within_s']:g} s after the window began: the gateway closes "
        "a dropped player's socket, but the kernel's FIN waits behind the bytes the player "
        "never read, so a client that reads nothing never sees the close.",
    ]


def joins_lines(results: dict[str, Any]) -> list[str]:
    j = results["joins"]
    if not j.get("ok"):
        return ["No timed join got data."]
    ok = j["p50_ms"] < 20 and j["p99_ms"] < 100 and j["ok"] >= 200
    ok = ok and j["starts_with_pat"] == j["ok"]
    return [
        f"{results['plan']['joins']} joins per gateway case, one after another while the case's "
        "players keep playing, each timed from `connect()` to its first body bytes.",
        "",
        f"- Gateway: {j['ok']} / {j['joins']} joins got data; first byte p50 **{j['p50_ms']} ms**, "
        f"p99 **{j['p99_ms']} ms**, max {j['max_ms']} ms; {j['starts_with_pat']} started with "
        f"the PAT, {j['starts_on_packet']} on a TS packet boundary. Target (p50 < 20 ms, "
        f"p99 < 100 ms over ≥ 200 joins, PAT first): {_met(ok)}.",
        f"- cfanout ({j['floor_joins']} joins): first byte median {_num(j['floor_p50_ms'], 1)} ms "
        "(it sends nothing until its next block, and never starts at a PAT).",
    ]


def markdown(results: dict[str, Any], plot_link: str | None) -> list[str]:
    machine, plan = results["machine"], results["plan"]
    lines = [
        f"- Date: {results['date']}; the run took {results['duration_s']:.0f} s",
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}",
        f"- Command: `{results['command']}`",
        f"- Stream: the engine emulator after a {plan['burst_bytes'] / 1e6:g} MB burst, in two "
        f"upstream shapes: {_SHAPE_WORDS['blocks']} and {_SHAPE_WORDS['pieces']}; "
        f"{plan['window_s']:g} s steady-state window per case",
        f"- Layout (pinned with sched_setaffinity, as taskset does): the server under test "
        f"(the gateway, or cfanout with one process per channel) alone on CPU "
        f"{plan['server_core']}; players, emulator and driver on CPU {plan['load_core']}; all "
        "on 127.0.0.1. For each case cfanout runs, then a fresh gateway.",
        "",
        "## Fan-out CPU cost against the floor",
        "",
        "CPU is the server processes' on-CPU time over the window (`/proc/<pid>/task/*/"
        "schedstat`, user + system), divided by the bytes all players received in that window. "
        "cfanout (`shared/bench/cfanout.c`, `gcc -O2`) is the floor: one epoll loop, the upstream "
        "gathered into blocks of up to 64 KiB or 100 ms, one `write()` per player per block; for "
        "several channels, one cfanout process per channel. The machine is noisy (the floor's "
        "own figure for one case moves by half between runs), so each case with a target runs "
        f"{plan.get('rounds', 1)} rounds of cfanout then a fresh gateway, and its ratio is the "
        "median of the rounds' ratios (their range beside it); other cases run "
        f"{plan.get('rounds_other', 1)}. A target is met when that ratio is within it and every "
        "player kept up (≥ 95 % of the bitrate) in every round.",
        "",
        *cost_table(results),
        "",
    ]
    if plot_link:
        lines += [f"![CPU per delivered byte as work grows]({plot_link})", ""]
    lines += [
        "## Delivery",
        "",
        "Each player reads as fast as data comes; expected bytes are players x bitrate x window. "
        "Valid TS: players whose every 188th byte, from their first, was a sync byte (cfanout "
        "starts a player wherever its next block starts, so this is the gateway's alone).",
        "",
        *delivery_table(results),
        "",
        "## Joins",
        "",
        *joins_lines(results),
        "",
        "## A burst of players on a new channel",
        "",
        *burst_lines(results),
        "",
        "## Isolation: players that stop reading",
        "",
        *isolation_lines(results),
        "",
        "## Memory",
        "",
        "A fresh gateway per case; RSS from `/proc/<pid>/status` (kernel socket buffers are not "
        "part of it).",
        "",
        *memory_table(results),
        "",
        "### Join and leave cycles",
        "",
        *cycles_lines(results),
        "",
        "### Per channel",
        "",
        "A channel holds one window of the stream (`PLAYER_BUFFER_BYTES`, 64 MiB at most): only "
        "what its slowest player still has to read and the latest join point (about one keyframe "
        "interval: 2 s here, 1 MB at 4 Mbit/s). With every player at the live edge that is the "
        "keyframe interval's bytes, so memory for channels is about (keyframe interval x "
        "bitrate) x channels; a player that falls behind holds up to the window for its channel "
        "until it catches up or is dropped, so the bound is window size x channels.",
        "",
        "## Limits of these figures",
        "",
        "- Loopback only: no NIC, no real network latency; the kernel's cost of delivering over "
        "loopback is charged to the sending process, for the gateway and cfanout alike.",
        "- The upstream is the engine emulator, not a real engine; the small-pieces shape writes "
        "whole TS packets every 20 ms.",
        "- The machine is shared with other work at times; ratios come from cfanout and the "
        "gateway measured one right after the other, which keeps them comparable, but single "
        "cases vary by some tenths between runs.",
    ]
    return lines


def summary(results: dict[str, Any]) -> list[str]:
    return [*cost_table(results), "", *joins_lines(results), "", *burst_lines(results)]


def plot(results: dict[str, Any], path: Path) -> bool:
    """CPU per delivered byte against players (one channel) and channels, per shape and server;
    False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    comparison = results["comparison"]
    figure, (by_players, by_channels) = plt.subplots(1, 2, figsize=(11, 4.2))
    for shape in SHAPES:
        players = [
            c
            for c in comparison
            if c["shape"] == shape and c["channels"] == 1 and c["bitrate_bps"] == 4_000_000
        ]
        channels = [
            c
            for c in comparison
            if c["shape"] == shape and c["players"] == 10 and c["bitrate_bps"] == 4_000_000
        ]
        for axis, cases, x in (
            (by_players, players, "players"),
            (by_channels, channels, "channels"),
        ):
            ordered = sorted(cases, key=lambda c: int(c[x]))
            xs = [c[x] for c in ordered]
            for server, style in (("gateway", "-o"), ("cfanout", "--s")):
                ys = [c[f"{server}_ns_per_byte"] for c in ordered]
                axis.plot(xs, ys, style, label=f"{server}, {shape}")
    by_players.set(xlabel="players (one channel, 4 Mbit/s)", ylabel="CPU ns per delivered byte")
    by_channels.set(xlabel="channels (10 players each, 4 Mbit/s)")
    for axis in (by_players, by_channels):
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("acestream-gateway fan-out cost against the C floor (same run)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
