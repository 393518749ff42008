"""The run's figures as JSON (raw), as the Markdown page docs/BENCHMARKS.md, and as a summary.

The page is rewritten by every run, so its reading of the figures is generated from them and
says no more than they show. It has one section per phase (the fan-out, failover); a run of one
phase alone keeps the other's section from the previous JSON, else from the previous page, and
says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import report_failover
from .failover import FailoverPlan
from .scenario import Plan

SECTIONS = ("fanout", "failover")
_NAMES = {"fanout": "fan-out", "failover": "failover"}
_MARKED = re.compile(r"<!-- (\w+) -->\n(.*?)\n<!-- /\1 -->", re.DOTALL)


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
    return {
        "date": date,
        "command": command,
        "duration_s": round(duration_s, 1),
        "machine": machine,
        "plan": plan.as_json(),
        "comparison": [_compare(phases, n) for n in plan.player_counts],
        "phases": phases,
    }


def _compare(phases: list[dict[str, Any]], count: int) -> dict[str, Any]:
    gw = next(p for p in phases if p["server"] == "gateway" and p["players"] == count)
    cf = next(p for p in phases if p["server"] == "cfanout" and p["players"] == count)
    gw_ns, cf_ns = gw["cpu_ns_per_byte"], cf["cpu_ns_per_byte"]
    return {
        "players": count,
        "gateway_core_share": gw["cpu"]["core_share"],
        "cfanout_core_share": cf["cpu"]["core_share"],
        "gateway_ns_per_byte": gw_ns,
        "cfanout_ns_per_byte": cf_ns,
        "ratio_gateway_to_cfanout": round(gw_ns / cf_ns, 2) if gw_ns and cf_ns else None,
        "gateway_delivered_share": gw["delivered_share"],
        "cfanout_delivered_share": cf["delivered_share"],
        "gateway_rss_kib_idle": gw["rss_kib_before"],
        "gateway_rss_kib_loaded": gw["rss_kib"],
        "gateway_rss_kib_per_player": round((gw["rss_kib"] - gw["rss_kib_before"]) / count, 1),
        "gateway_ttfb_ms_median": gw["ttfb"].get("first_byte_ms_median"),
        "cfanout_ttfb_ms_median": cf["ttfb"].get("first_byte_ms_median"),
    }


def assemble_failover(
    plan: FailoverPlan,
    figures: dict[str, Any],
    *,
    date: str,
    command: str,
    duration_s: float,
    machine: dict[str, object],
) -> dict[str, Any]:
    """The failover section's figures."""
    return {
        "date": date,
        "command": command,
        "duration_s": round(duration_s, 1),
        "machine": machine,
        "config": plan.as_json(),
        **figures,
    }


def load(json_path: Path) -> dict[str, Any]:
    """The previous run's sections, by name; a page of the fan-out alone counts as its section."""
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "phases" in data:
        return {"fanout": data}
    return {name: data[name] for name in SECTIONS if isinstance(data.get(name), dict)}


def kept_sections(doc_path: Path) -> dict[str, str]:
    """The previous page's sections, by name, as text; a page from before the sections were
    marked holds the fan-out alone, from its first ``- Date:`` line on."""
    try:
        page = doc_path.read_text()
    except OSError:
        return {}
    marked = {name: text for name, text in _MARKED.findall(page) if name in SECTIONS}
    if marked or "\n- Date:" not in page:
        return marked
    return {"fanout": page[page.index("\n- Date:") + 1 :].strip()}


def write(
    results: dict[str, Any],
    *,
    measured: list[str],
    kept: dict[str, str],
    json_path: Path,
    doc_path: Path,
) -> None:
    """``results``: this run's sections, with the previous JSON's for the others."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"measured": measured, **results}, indent=2) + "\n")
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(markdown(results, measured=measured, kept=kept))


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mib(kib: int | float) -> str:
    return f"{kib / 1024:.1f}"


def _phase(results: dict[str, Any], server: str, count: int) -> dict[str, Any]:
    phase: dict[str, Any] = next(
        p for p in results["phases"] if p["server"] == server and p["players"] == count
    )
    return phase


def cpu_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| players | delivered (gateway) | gateway CPU (user + sys s) | cfanout CPU (user + sys s) "
        "| gateway ns/byte | cfanout ns/byte | gateway / cfanout |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["comparison"]:
        gw = _phase(results, "gateway", c["players"])
        cf = _phase(results, "cfanout", c["players"])
        rows.append(
            f"| {c['players']} | {gw['throughput_mbit_s']:.0f} Mbit/s "
            f"| {_pct(c['gateway_core_share'])} ({_split(gw)}) "
            f"| {_pct(c['cfanout_core_share'])} ({_split(cf)}) "
            f"| {_num(c['gateway_ns_per_byte'], 3)} | {_num(c['cfanout_ns_per_byte'], 3)} "
            f"| **{_num(c['ratio_gateway_to_cfanout'], 1)}x** |"
        )
    return rows


def _split(phase: dict[str, Any]) -> str:
    return f"{phase['cpu']['user_s']:.2f} + {phase['cpu']['sys_s']:.2f}"


def delivery_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| players | server | received before the window (median) | delivered / expected "
        "| slowest player | behind (< 90 %) | dropped | gateway log: dropped / left |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in results["phases"]:
        events = p.get("events")
        log = f"{events['player_dropped']} / {events['player_left']}" if events else "—"
        rows.append(
            f"| {p['players']} | {p['server']} "
            f"| {p['received_before_window_median'] / 1e6:.1f} MB | {_pct(p['delivered_share'])} "
            f"| {_pct(p['player_share_min'])} | {len(p['behind'])} | {len(p['dropped'])} "
            f"| {log} |"
        )
    return rows


def memory_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| players | RSS, 0 players (MiB) | RSS with them, after the burst (MiB) "
        "| growth per player (KiB) | peak while joining and bursting (MiB) "
        "| peak growth per player (KiB) | RSS after they left (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["comparison"]:
        gw = _phase(results, "gateway", c["players"])
        peak_per = (gw["peak_rss_kib"] - gw["rss_kib_before"]) / c["players"]
        rows.append(
            f"| {c['players']} | {_mib(c['gateway_rss_kib_idle'])} "
            f"| {_mib(c['gateway_rss_kib_loaded'])} | {c['gateway_rss_kib_per_player']:.1f} "
            f"| {_mib(gw['peak_rss_kib'])} | {peak_per:.1f} "
            f"| {_mib(gw['rss_kib_after_players_left'])} |"
        )
    return rows


def ttfb_table(results: dict[str, Any]) -> list[str]:
    rows = [
        "| players already on the channel | server | joins | headers (median) "
        "| first byte (median) | first byte (range) | starts on a TS packet | starts with PAT |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in results["phases"]:
        t = p["ttfb"]
        if not t.get("joins_ok"):
            rows.append(f"| {p['players']} | {p['server']} | 0 / {t['joins']} | | | | | |")
            continue
        rows.append(
            f"| {p['players']} | {p['server']} | {t['joins_ok']} / {t['joins']} "
            f"| {t['headers_ms_median']:.1f} ms | {t['first_byte_ms_median']:.1f} ms "
            f"| {t['first_byte_ms_min']:.0f} to {t['first_byte_ms_max']:.0f} ms "
            f"| {t['starts_on_packet']} / {t['joins_ok']} "
            f"| {t['starts_with_pat']} / {t['joins_ok']} |"
        )
    return rows


def reading(results: dict[str, Any]) -> list[str]:
    """Plain statements about this run's figures, generated so they never outlive them."""
    return [
        *_reading_cpu(results),
        *_reading_delivery(results),
        *_reading_memory(results),
        *_reading_ttfb(results),
    ]


def _reading_cpu(results: dict[str, Any]) -> list[str]:
    pairs = [
        (c["players"], c["ratio_gateway_to_cfanout"])
        for c in results["comparison"]
        if c["ratio_gateway_to_cfanout"]
    ]
    if not pairs:
        return ["- No CPU ratio could be computed (nothing was delivered in some phase)."]
    ratios = [r for _, r in pairs]
    each = ", ".join(f"{r:.1f}x at {n}" for n, r in pairs)
    trend = "stays within ±15 %"
    if ratios[-1] > ratios[0] * 1.15:
        trend = "grows"
    elif ratios[-1] < ratios[0] / 1.15:
        trend = "shrinks"
    last = results["comparison"][-1]
    return [
        f"- Per delivered byte the gateway used {min(ratios):.1f}x to {max(ratios):.1f}x the CPU "
        f"time of the C floor ({each} players); the ratio {trend} as players are added.",
        f"- With {last['players']} players at {results['plan']['bitrate_bps'] / 1e6:g} Mbit/s the "
        f"gateway kept {_pct(last['gateway_core_share'])} of one core busy, cfanout "
        f"{_pct(last['cfanout_core_share'])}.",
    ]


def _reading_delivery(results: dict[str, Any]) -> list[str]:
    lines = []
    for p in results["phases"]:
        problems = []
        if p["behind"]:
            problems.append(f"{len(p['behind'])} player(s) got less than 90 % of the bitrate")
        if p["dropped"]:
            problems.append(f"{len(p['dropped'])} player(s) were disconnected")
        if not p["settled"]:
            problems.append("the rate never settled at N x bitrate before the window")
        load = p["load_core"]["players_core_share"] + p["load_core"]["emulator_core_share"]
        if load > 0.9:
            problems.append(f"the load core was {_pct(load)} busy, so players may have lagged")
        if problems:
            lines.append(f"- {p['server']}, {p['players']} players: " + "; ".join(problems) + ".")
    if not lines:
        return [
            "- In every phase every player received at least 90 % of the bitrate during the "
            "window and none was disconnected."
        ]
    return lines


def _reading_memory(results: dict[str, Any]) -> list[str]:
    peaks, after = [], []
    for c in results["comparison"]:
        gw = _phase(results, "gateway", c["players"])
        before, count = gw["rss_kib_before"], c["players"]
        peaks.append(f"{(gw['peak_rss_kib'] - before) / count:.0f} KiB ({count} players)")
        kept = gw["rss_kib"] >= 0.95 * gw["peak_rss_kib"]
        after.append(
            f"{'stayed at that peak' if kept else 'fell back'} with {count} players "
            f"(+{c['gateway_rss_kib_per_player']:.0f} KiB per player)"
        )
    return [
        f"- While the players joined and the burst went out, the gateway's RSS rose per player "
        f"by {', '.join(peaks)} above its level just before they joined. Once the burst was "
        f"through, RSS {'; '.join(after)}. RSS after the burst holds whatever the allocator kept "
        "from the peak, so that per-player growth is an upper bound on what a playing player "
        "costs, not a measure of it.",
    ]


def _reading_ttfb(results: dict[str, Any]) -> list[str]:
    lines = []
    for c in results["comparison"]:
        gw = _phase(results, "gateway", c["players"])["ttfb"]
        if not gw.get("joins_ok"):
            lines.append(f"- No timed join got data from the gateway at {c['players']} players.")
            continue
        lines.append(
            f"- Joining a running channel with {c['players']} players on it: first byte after "
            f"{_num(c['gateway_ttfb_ms_median'], 0)} ms (median) through the gateway, "
            f"{_num(c['cfanout_ttfb_ms_median'], 0)} ms through cfanout; "
            f"{gw['starts_with_pat']} of {gw['joins_ok']} gateway joins started with a PAT "
            f"(first PIDs seen: {', '.join(str(pid) for pid in gw['first_pids'])})."
        )
    lines.append(
        "- The emulator sends one block every 100 ms, and both servers pass each block on as it "
        "comes, so a join's first byte mostly waits for the next block; the join figures compare "
        "the two servers, they are not what a real engine would give."
    )
    return lines


def markdown(results: dict[str, Any], *, measured: list[str], kept: dict[str, str]) -> str:
    """The page: this run's sections, and for the phases it did not run the previous figures."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`tests/bench/`), which measures the fan-out, then failover; "
        "`make bench BENCH_ARGS='--only failover'` (or `--only fanout`) measures one phase and "
        "keeps the other's section from the previous run. Every run rewrites this page and "
        "`bench-results/latest.json` (raw figures). Read the ratios, which come from one run on "
        "one machine, rather than the absolute figures.",
        "",
        *_provenance(results, measured, kept),
    ]
    for name in SECTIONS:
        if name in results:
            body = "\n".join(_section_lines(name, results[name]))
        elif name in kept:
            body = kept[name]
        else:
            continue
        lines += ["", f"<!-- {name} -->", body, f"<!-- /{name} -->"]
    return "\n".join(lines) + "\n"


def _provenance(results: dict[str, Any], measured: list[str], kept: dict[str, str]) -> list[str]:
    latest = results[measured[0]]
    names = " and ".join(_NAMES[n] for n in measured)
    lines = [f"- Latest run: {latest['date']}, `{latest['command']}`, measured the {names}."]
    for name in SECTIONS:
        if name in measured:
            continue
        if name in results:
            lines.append(
                f"- The {_NAMES[name]} was not re-measured: its figures are from "
                f"{results[name]['date']} (`bench-results/latest.json` of that run)."
            )
        elif name in kept:
            lines.append(
                f"- The {_NAMES[name]} was not re-measured: its section is kept as the run "
                "dated in it wrote it."
            )
    return lines


def _section_lines(name: str, figures: dict[str, Any]) -> list[str]:
    if name == "failover":
        return report_failover.markdown(figures)
    return fanout_markdown(figures)


def fanout_markdown(results: dict[str, Any]) -> list[str]:
    machine, plan = results["machine"], results["plan"]
    return [
        f"- Date: {results['date']}; the run took {results['duration_s']:.0f} s",
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}",
        f"- Command: `{results['command']}`",
        f"- Stream: the engine emulator at {plan['bitrate_bps'] / 1e6:g} Mbit/s after a "
        f"{plan['burst_bytes'] / 1e6:g} MB burst; one channel; {plan['window_s']:g} s "
        "steady-state window per phase",
        f"- Layout (pinned with sched_setaffinity, as taskset does): the server under test "
        f"(gateway or cfanout) alone on CPU {plan['server_core']}; players, emulator and driver "
        f"on CPU {plan['load_core']}; all on 127.0.0.1. Phases run one after another, cfanout "
        "then the gateway for each player count.",
        "",
        "## Fan-out CPU cost against the floor",
        "",
        "CPU is the server process's on-CPU time over the window (`/proc/<pid>/task/*/schedstat`, "
        "user + system), divided by the bytes all players received in that window. cfanout "
        "(`shared/bench/cfanout.c`, `gcc -O2`) is the floor: one epoll loop, one `write()` per "
        "player per block.",
        "",
        *cpu_table(results),
        "",
        "## Delivery",
        "",
        "Each player reads as fast as data comes; expected bytes are players x bitrate x window.",
        "",
        *delivery_table(results),
        "",
        "## Gateway memory",
        "",
        "A fresh gateway process per phase; RSS and its peak (VmHWM, reset as the players begin "
        "to join) from `/proc/<pid>/status`.",
        "",
        *memory_table(results),
        "",
        "## Time to first byte for a player joining a running channel",
        "",
        f"{plan['joins']} joins one after another, each timed from `connect()` to its first "
        "body bytes, while the phase's players keep playing.",
        "",
        *ttfb_table(results),
        "",
        "## Reading",
        "",
        *reading(results),
        "",
        "## Limits of these figures",
        "",
        "- Loopback only: no NIC, no real network latency; the kernel's cost of delivering over "
        "loopback is charged to the sending process, for the gateway and cfanout alike.",
        "- The upstream is the engine emulator (one session, 100 ms blocks), not a real engine.",
        "- The gateway answers HTTP/1.1 players with chunked encoding; its byte counts include "
        "the chunk framing (a few bytes per ~50 KB block).",
        "- One channel only; many channels with few players each are not measured here.",
    ]


def summary(results: dict[str, Any], measured: list[str]) -> str:
    parts = []
    for name in measured:
        figures = results[name]
        lines = report_failover.summary(figures) if name == "failover" else fanout_summary(figures)
        parts.append(
            "\n".join(
                [
                    f"acestream-gateway {_NAMES[name]}, {figures['date']}, "
                    f"{figures['duration_s']:.0f} s",
                    "",
                    *lines,
                ]
            )
        )
    return "\n\n".join(parts)


def fanout_summary(results: dict[str, Any]) -> list[str]:
    return [
        *cpu_table(results),
        "",
        *delivery_table(results),
        "",
        *memory_table(results),
        "",
        *ttfb_table(results),
        "",
        *reading(results),
    ]
