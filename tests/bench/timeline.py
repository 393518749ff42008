"""Where a failover's time goes, read from the gateway's own log: for each kill, when the gateway
saw the upstream end, failed over, had the new session's answer, its first data and the splice.

The log's ISO timestamps and the kill's are the same wall clock, so offsets from the kill are
comparable with the gaps the players measured.
"""

from __future__ import annotations

import datetime
import json
import statistics
from pathlib import Path
from typing import Any

from acestream_gateway.settings import Settings

# Events that tell a failover's story, in the order they usually come.
EVENTS = (
    "upstream_broken",
    "upstream_ended",
    "upstream_stalled",
    "engine_lost",
    "channel_failover",
    "engine_session_failed",
    "upstream_open_failed",
    "engine_session_started",
    "upstream_first_data",
    "upstream_spliced",
    "engine_gone",
    "engine_started",
    "engine_ready",
)
# A stage ends at the first of these events after the kill.
STAGES = {
    "detected": ("upstream_broken", "upstream_ended", "upstream_stalled", "engine_lost"),
    "failover": ("channel_failover",),
    "session_started": ("engine_session_started",),
    "first_data": ("upstream_first_data",),
    "spliced": ("upstream_spliced",),
    "spare_ready": ("engine_ready",),
}
_DEFAULTS = (
    "keepalive_interval_s",
    "failover_attempts",
    "failover_backoff_s",
    "stall_timeout_s",
    "engine_api_timeout_s",
    "stream_linger_s",
)


def gateway_defaults() -> dict[str, Any]:
    """The product defaults the phase leaves alone but whose values shape a failover."""
    return {name: Settings.model_fields[name].default for name in _DEFAULTS}


def events(log_path: Path) -> list[tuple[float, str]]:
    """``(unix time, event)`` of every watched event in a JSON-lines gateway log."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            at = datetime.datetime.fromisoformat(record["timestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("event") in EVENTS:
            out.append((at, str(record["event"])))
    return out


def attach(runs: list[dict[str, Any]], log_path: Path) -> None:
    """Add to each run the watched events between its kill and the next, in ms from its kill."""
    logged = events(log_path) if log_path.exists() else []
    for index, run in enumerate(runs):
        start = run["killed_at_unix"]
        end = runs[index + 1]["killed_at_unix"] if index + 1 < len(runs) else float("inf")
        window = [(round((at - start) * 1000, 1), name) for at, name in logged if start <= at < end]
        run["events_ms"] = window
        run["stages_ms"] = {
            stage: next((ms for ms, name in window if name in names), None)
            for stage, names in STAGES.items()
        }
        run["failover_attempts"] = sum(1 for _, name in window if name == "channel_failover")


def stage_medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per stage, the median over runs of its offset from the kill."""
    medians: dict[str, float | None] = {}
    for stage in STAGES:
        values = [r["stages_ms"][stage] for r in runs if r["stages_ms"].get(stage) is not None]
        medians[stage] = round(statistics.median(values), 1) if values else None
    return medians
