"""The failover phase's part of docs/BENCHMARKS.md and of the summary, generated from its figures
so that what it says never outlives them."""

from __future__ import annotations

from typing import Any

TITLE = "## Failover: from an engine's death to new data"

# Where the time between the kill and the players' new data goes, stage by stage.
_SEGMENTS = (
    ("detected", None, "the gateway saw the engine's stream end"),
    ("session_started", "detected", "the new engine answered the session start"),
    ("first_data", "session_started", "the new engine's first data (its prebuffer)"),
    ("spliced", "first_data", "the splice point (PAT, then a keyframe) was found"),
)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def gap_table(f: dict[str, Any]) -> list[str]:
    g, players = f["gaps_ms"], f["config"]["players"]
    return [
        "| kills | players | gaps measured | median | p90 | max | min "
        "| resumed with the PAT | resumed on a packet boundary |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(f['runs'])} | {players} | {g['count']} | **{_ms(g['median'])}** "
        f"| {_ms(g['p90'])} | **{_ms(g['max'])}** | {_ms(g['min'])} "
        f"| {f['resumed_with_pat']} / {f['resumptions']} "
        f"| {f['resumed_on_packet_boundary']} / {f['resumptions']} |",
    ]


def run_table(f: dict[str, Any]) -> list[str]:
    rows = [
        "| kill | gap, each player | stream end seen | failover attempts | new session answered "
        "| first data | splice | spare ready again | keep-alive packets in the gap |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in f["runs"]:
        s = run["stages_ms"]
        rows.append(
            f"| {run['run']} | {', '.join(_ms(g) for g in run['gaps_ms'])} "
            f"| {_ms(s['detected'])} | {run['failover_attempts']} | {_ms(s['session_started'])} "
            f"| {_ms(s['first_data'])} | {_ms(s['spliced'])} | {_ms(s['spare_ready'])} "
            f"| {', '.join(str(k) for k in run['keepalive_packets'])} |"
        )
    return rows


def reading(f: dict[str, Any]) -> list[str]:
    """Plain statements about the phase's figures."""
    g, config = f["gaps_ms"], f["config"]
    if not g["count"]:
        return ["- No gap was measured."]
    return [
        f"- Over {len(f['runs'])} kills and {config['players']} players each, the players waited "
        f"{_ms(g['median'])} (median) and at most {_ms(g['max'])} for new data; "
        f"{f['resumed_with_pat']} of {f['resumptions']} resumptions began with the PAT. The "
        "players of one kill share one upstream, so their gaps differ by milliseconds: the "
        "spread is between kills.",
        *_reading_stages(f),
        *_reading_attempts(f),
    ]


def _reading_stages(f: dict[str, Any]) -> list[str]:
    medians = f["stages_ms_median"]
    spans = []
    for stage, since, what in _SEGMENTS:
        end, start = medians.get(stage), 0.0 if since is None else medians.get(since)
        if end is not None and start is not None:
            spans.append((end - start, what))
    if medians.get("spliced") is not None and f["gaps_ms"]["median"] is not None:
        spans.append((f["gaps_ms"]["median"] - medians["spliced"], "the data reached the players"))
    if not spans:
        return []
    parts = "; then ".join(f"{span:.0f} ms until {what}" for span, what in spans)
    longest, what = max(spans)
    prebuffer_ms = f["config"]["prebuffer_s"] * 1000
    return [
        f"- Where the time goes (medians over the kills, from the gateway's log): from the kill, "
        f"{parts}. "
        f"The longest stage is {what} ({longest:.0f} ms); the engines prebuffer "
        f"{prebuffer_ms:.0f} ms here, a real engine's prebuffer (often several seconds) adds "
        "to the gap one for one.",
    ]


def _reading_attempts(f: dict[str, Any]) -> list[str]:
    runs = f["runs"]
    futile = [r for r in runs if _failed_before_start(r["events_ms"])]
    if not futile:
        return []
    backoff = f["config"]["gateway_defaults"]["failover_backoff_s"]
    attempts = sorted({r["failover_attempts"] for r in runs})
    clean = all(_first_end(r["events_ms"]) == "upstream_ended" for r in futile)
    how = "its stream had ended like a clean end of stream" if clean else "its stream had ended"
    medians = f["stages_ms_median"]
    detected, started = medians.get("detected"), medians.get("session_started")
    if detected is None or started is None:
        return []
    retry_ms = started - detected
    waited = retry_ms >= backoff * 1000 * 0.8
    why = (
        f"after `FAILOVER_BACKOFF_S` ({backoff:g} s), which is part of every such gap"
        if waited
        else f"without waiting `FAILOVER_BACKOFF_S` ({backoff:g} s): a move off a failed engine "
        "goes at once"
    )
    return [
        f"- In {len(futile)} of {len(runs)} kills the first failover attempt went to the killed "
        f"engine, still listed as ready ({how}), and failed at once; the spare answered the next "
        f"attempt {retry_ms:.0f} ms after the end was seen (median), {why}. Failover attempts "
        f"per kill: {', '.join(str(a) for a in attempts)}.",
    ]


def _first_end(events: list[list[Any]]) -> str | None:
    ends = ("upstream_ended", "upstream_broken", "upstream_stalled", "engine_lost")
    return next((name for _, name in events if name in ends), None)


def _failed_before_start(events: list[list[Any]]) -> bool:
    for _, name in events:
        if name == "engine_session_started":
            return False
        if name in ("engine_session_failed", "upstream_open_failed"):
            return True
    return False


def markdown(f: dict[str, Any]) -> list[str]:
    config, defaults = f["config"], f["config"]["gateway_defaults"]
    machine = f["machine"]
    return [
        TITLE,
        "",
        f"- Date: {f['date']}; the phase took {f['duration_s']:.0f} s",
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}",
        f"- Command: `{f['command']}`",
        f"- Gateway: `acestream-gateway serve` in its own process with its fleet of engine "
        f"emulator containers (`{config['image']}`) on the local Docker daemon; `MIN_REPLICAS=1`, "
        f"`MAX_STREAMS_PER_ENGINE=1` (so one warm spare stands beside the channel's engine), "
        f"`HEALTH_CHECK_INTERVAL_S={config['health_check_interval_s']:g}`; the rest at its "
        f"defaults: `KEEPALIVE_INTERVAL_S={defaults['keepalive_interval_s']:g}`, "
        f"`FAILOVER_ATTEMPTS={defaults['failover_attempts']}`, "
        f"`FAILOVER_BACKOFF_S={defaults['failover_backoff_s']:g}`, "
        f"`STALL_TIMEOUT_S={defaults['stall_timeout_s']:g}`",
        f"- Engines: prebuffer {config['prebuffer_s']:g} s (`EMULATOR_PREBUFFER_S`), then a "
        f"{config['burst_bytes'] / 1e6:g} MB burst and {config['bitrate_bps'] / 1e6:g} Mbit/s, "
        f"a keyframe every {config['keyframe_interval_s']:g} s",
        f"- {config['players']} players on one channel. Each kill: the engine carrying the "
        "channel (the one whose emulator counts an active session) gets `docker kill`; each "
        "player's gap runs from the moment the command is issued to the first TS packet other "
        "than keep-alive (PID 0x1FFF) it receives. The next kill waits until a spare is ready "
        f"again and the channel has played {config['spacing_s']:g} s on its new engine (a "
        f"session that streamed {config['spacing_s'] - 1:g} s starts the failover attempt count "
        "over), so every kill meets a healthy channel.",
        "",
        *gap_table(f),
        "",
        "Each kill, in ms from the moment `docker kill` was issued (the stages from the "
        "gateway's log):",
        "",
        *run_table(f),
        "",
        "### Reading",
        "",
        *reading(f),
        "",
        "### Limits of these figures",
        "",
        "- `docker kill` takes the engine away at once; an engine that hangs or stalls is "
        "noticed only by the health probes or `STALL_TIMEOUT_S`, which these figures do not "
        "include.",
        "- The engines are the emulator, which answers a session start at once and prebuffers "
        "exactly as long as it is told; a real engine's start is slower and varies.",
        "- Players, gateway and engines share one machine over loopback.",
    ]


def summary(f: dict[str, Any]) -> list[str]:
    return [*gap_table(f), "", *run_table(f), "", *reading(f)]
