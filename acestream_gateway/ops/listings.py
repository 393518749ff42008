"""``/engines``, ``/streams`` and acexy's ``/ace/status``: lists built from memory.

Each engine with its state, health, address, load and players; each channel with its engine,
players, bytes, failovers and the engine's own figures from the stat poller's last round. Times
are wall-clock ISO 8601 (UTC); the pool keeps idle times on the monotonic clock, so those are
converted with one pair of readings taken together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..engines.model import ContentRef, EngineState, InputKind
from ..engines.pool import EngineLoad
from ..fleet.specs import LABEL_VPN
from ..streaming.channel import Channel
from ..streaming.station import Station
from .stats import EngineFigures
from .status import hls_players, players

# The label VPN mode puts on an engine behind a VPN container: the VPN's name.
VPN_LABEL = LABEL_VPN

_HEALTH = {
    EngineState.STARTING: "unknown",
    EngineState.READY: "healthy",
    EngineState.DRAINING: "healthy",
    EngineState.UNHEALTHY: "unhealthy",
}


@dataclass(frozen=True, slots=True)
class Clocks:
    """A wall and a monotonic reading taken together, to show monotonic times as wall times."""

    wall: float
    mono: float

    def wall_of(self, mono: float) -> float:
        return self.wall - (self.mono - mono)


def iso(wall: float | None) -> str | None:
    if wall is None or wall <= 0:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


def engine_entry(load: EngineLoad, channels: Sequence[Channel], clocks: Clocks) -> dict[str, Any]:
    """One engine; ``channels`` are those whose current claim is on it."""
    engine = load.engine
    busy = load.streams > 0
    idle_since = None if busy or load.idle_since is None else clocks.wall_of(load.idle_since)
    return {
        "id": engine.id,
        "name": engine.name,
        "state": engine.state.value,
        "health": _HEALTH[engine.state],
        "address": engine.address.host,
        "port": engine.address.port,
        "endpoint": engine.endpoint,
        "node": engine.node or None,
        "streams": load.streams,
        "streams_active": load.active,
        "players": sum(players(c) for c in channels),
        "channels": [c.content.key for c in channels],
        "created_at": iso(engine.created_at),
        "last_used_at": iso(clocks.wall if busy else idle_since),
        "vpn": engine.labels.get(VPN_LABEL),
    }


def engines_listing(
    loads: Sequence[EngineLoad], channels: Sequence[Channel], clocks: Clocks
) -> list[dict[str, Any]]:
    """Every engine, oldest first."""
    by_engine: dict[str, list[Channel]] = {}
    for channel in channels:
        if channel.claim is not None:
            by_engine.setdefault(channel.claim.engine.id, []).append(channel)
    ordered = sorted(loads, key=lambda x: (x.engine.created_at, x.engine.name))
    return [engine_entry(x, by_engine.get(x.engine.id, []), clocks) for x in ordered]


def stream_entry(
    channel: Channel, figures: EngineFigures | None, stations: Sequence[Station] = ()
) -> dict[str, Any]:
    """One channel: what the gateway counts, the engine's figures of its session, and the
    lineup's channels (``stations``) whose current source it is."""
    claim = channel.claim
    content = channel.content
    return {
        "key": content.key,
        "kind": content.kind.value,
        "content_id": content.value,
        "file_indexes": content.file_indexes,
        "state": _stream_state(channel),
        "engine": None if claim is None else {"id": claim.engine.id, "name": claim.engine.name},
        "players": players(channel),
        "players_hls": hls_players(channel),
        "bytes_in": channel.meter.bytes_in,
        "bytes_out": channel.bytes_out,
        "sessions": channel.meter.sessions,
        "started_at": iso(channel.started_at),
        "failovers": channel.failovers,
        "engine_stats": None if figures is None else figures.as_json(),
        "stations": [
            {"number": s.number, "name": s.name, "source_failovers": s.failovers}
            for s in stations
            if s.current is not None and s.current.key == content.key
        ],
    }


def _stream_state(channel: Channel) -> str:
    if channel.stopping or channel.broadcast.closed:
        return "stopping"
    if channel.session is None:
        return "starting" if not channel.meter.sessions else "failing_over"
    return "playing"


def streams_listing(
    channels: Sequence[Channel],
    figures: Callable[[Channel], EngineFigures | None],
    stations: Sequence[Station] = (),
) -> list[dict[str, Any]]:
    """Every open channel, oldest first."""
    ordered = sorted(channels, key=lambda c: c.started_at)
    return [stream_entry(c, figures(c), stations) for c in ordered]


def acexy_status(channels: Sequence[Channel], wanted: ContentRef | None) -> dict[str, Any] | None:
    """acexy's ``/ace/status``: ``{"streams": N}``, or for one content ``{"clients": players,
    "stream_id": id}`` (None when no channel plays it)."""
    if wanted is None:
        return {"streams": len(channels)}
    kinds = (InputKind.CONTENT_ID,) if wanted.kind is InputKind.CONTENT_ID else (wanted.kind,)
    matching = [c for c in channels if c.content.kind in kinds and c.content.value == wanted.value]
    if not matching:
        return None
    return {"clients": sum(players(c) for c in matching), "stream_id": wanted.value}
