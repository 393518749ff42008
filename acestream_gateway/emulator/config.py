"""The emulator's knobs: what a test can tune or break, at start and while it runs.

Knobs are one frozen snapshot, replaced whole on every change, so a handler that read them once
sees a consistent set. Each knob has one parser that takes a command-line or environment string
(``--emu-prebuffer-s 5``, ``EMULATOR_PREBUFFER_S=never``) or a JSON value from the control endpoint.
The engine's own options (ports, --bind-all) are separate: they are fixed for the process's life.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .mpegts import TsStream

NEVER = math.inf
ENV_PREFIX = "EMULATOR_"
REFUSE_MODES = ("off", "close", "reset")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class KnobError(ValueError):
    """A knob value that cannot be used; the message names the knob."""


def _knob(default: Any, kind: str, help_text: str) -> Any:
    if isinstance(default, frozenset):
        return field(default_factory=lambda: default, metadata={"kind": kind, "help": help_text})
    return field(default=default, metadata={"kind": kind, "help": help_text})


@dataclass(frozen=True)
class Knobs:
    """How the emulated engine behaves; seconds accept "never" where waiting forever makes sense."""

    version: str = _knob("3.2.3", "version", "engine version reported by get_version")
    json_delay_s: float = _knob(0.0, "seconds", "delay before getstream/manifest.m3u8 answer")
    api_delay_s: float = _knob(0.0, "seconds", "delay before version/status/stat answers")
    prebuffer_s: float = _knob(
        2.0, "seconds", "response headers of a new session are held this long (never: dead)"
    )
    burst_bytes: int = _knob(20_000_000, "count", "live window sent at link speed to a reader")
    bitrate_bps: int = _knob(4_000_000, "count", "real-time bitrate after the burst (bit/s)")
    keyframe_interval_s: float = _knob(2.0, "seconds", "distance between keyframes (and HLS segs)")
    write_interval_s: float = _knob(
        0.1, "seconds", "after the burst, one piece is written this often (0.02: a live engine)"
    )
    unknown_ids: frozenset[str] = _knob(
        frozenset(), "ids", "content ids/infohashes/urls/magnets that getstream refuses (* = all)"
    )
    dead_ids: frozenset[str] = _knob(frozenset(), "ids", "inputs whose sessions prebuffer forever")
    end_after_s: float = _knob(NEVER, "seconds", "a reader's stream ends (EOF) after this long")
    stall_after_s: float = _knob(NEVER, "seconds", "a reader's stream stops, still open, after")
    stop_delay_s: float = _knob(0.0, "seconds", "stop command hangs this long before acting")
    idle_timeout_s: float = _knob(30.0, "seconds", "a session nobody reads ends after this long")
    refuse: str = _knob(
        "off", "refuse", "off | close (listening socket closed) | reset (engine paths reset)"
    )
    crash_after_s: float = _knob(NEVER, "seconds", "the process dies this long after start/set")
    network_connected: bool = _knob(True, "flag", "get_network_connection_status answer")
    stat_camel_case: bool = _knob(False, "flag", "stat uses speedDown/speedUp like some versions")

    @property
    def version_code(self) -> int:
        major, minor, patch = (int(part) for part in self.version.split("."))
        return major * 1_000_000 + minor * 10_000 + patch * 100

    def updated(self, changes: Mapping[str, object]) -> Knobs:
        """A copy with `changes` parsed and applied; KnobError names the first bad one."""
        known = {f.name: f for f in dataclasses.fields(self)}
        parsed: dict[str, object] = {}
        for name, raw in changes.items():
            if name not in known:
                raise KnobError(f"unknown knob {name!r}")
            parsed[name] = parse_knob(known[name].metadata["kind"], name, raw)
        result = dataclasses.replace(self, **parsed)  # type: ignore[arg-type]
        result.check()
        return result

    def check(self) -> None:
        """Cross-knob checks: the stream source must accept the bitrate and keyframe interval."""
        try:
            TsStream(bitrate_bps=self.bitrate_bps, keyframe_interval_s=self.keyframe_interval_s)
        except ValueError as exc:
            raise KnobError(f"bitrate_bps/keyframe_interval_s: {exc}") from exc
        if not 0 < self.keyframe_interval_s < NEVER:
            raise KnobError("keyframe_interval_s must be a positive number of seconds")
        if not 0.001 <= self.write_interval_s <= 1.0:
            raise KnobError("write_interval_s must be between 0.001 and 1 second")

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, float) and math.isinf(value):
                value = "never"
            out[f.name] = value
        return out


def knob_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Knobs))


def env_name(knob: str) -> str:
    return ENV_PREFIX + knob.upper()


def flag_name(knob: str) -> str:
    return "--emu-" + knob.replace("_", "-")


def parse_knob(kind: str, name: str, raw: object) -> object:
    try:
        return _PARSERS[kind](raw)
    except (TypeError, ValueError) as exc:
        raise KnobError(f"{name}: {exc}") from exc


def _seconds(raw: object) -> float:
    if isinstance(raw, str):
        text = raw.strip().lower()
        value = NEVER if text in {"never", "inf", "none"} else float(text)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif raw is None:
        value = NEVER
    else:
        raise TypeError(f"expected seconds or 'never', got {raw!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"expected seconds >= 0 or 'never', got {raw!r}")
    return value


def _count(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise TypeError(f"expected an integer, got {raw!r}")
    value = int(raw.replace("_", "")) if isinstance(raw, str) else raw
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {raw!r}")
    return value


def _ids(raw: object) -> frozenset[str]:
    if isinstance(raw, str):
        items: list[object] = list(raw.split(","))
    elif isinstance(raw, list | tuple | set | frozenset):
        items = list(raw)
    else:
        raise TypeError(f"expected a list or a comma-separated string, got {raw!r}")
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"expected strings, got {raw!r}")
    return frozenset(str(item).strip().lower() for item in items if str(item).strip())


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {raw!r}")


def _refuse(raw: object) -> str:
    if raw is False or raw is None:
        return "off"
    if isinstance(raw, str) and raw.strip().lower() in REFUSE_MODES:
        return raw.strip().lower()
    raise ValueError(f"expected one of {', '.join(REFUSE_MODES)}, got {raw!r}")


def _version(raw: object) -> str:
    if not isinstance(raw, str) or not _VERSION.match(raw.strip()):
        raise ValueError(f"expected major.minor.patch, got {raw!r}")
    return raw.strip()


_PARSERS = {
    "seconds": _seconds,
    "count": _count,
    "ids": _ids,
    "flag": _flag,
    "refuse": _refuse,
    "version": _version,
}


@dataclass(frozen=True)
class EngineOptions:
    """What the process was started with: fixed for its life, unlike the knobs."""

    http_port: int = 6878
    bind_all: bool = False
    host: str = "0.0.0.0"
    control_port: int | None = None
    crash_exits: bool = False
    """A crash ends the process (the CLI); in-process it drops every connection instead."""
