"""Stations: the channels of the lineup as players tune them, each playing one of its sources
through that source's per-content channel of the registry.

A station holds no engine session of its own: its players are players of the per-content channel
of its current source, so a station and a direct ``/ace/getstream`` player of the same content
share one session, and the station never holds more than one (a player leaves the old source's
channel before it joins the next one). Which source that is, is decided here, for all the
station's players at once, under the station's lock:

- a start tries the sources in order of preference, those still bad left out;
- a source that fails (refused by the engine, no data in time, or ended for good after the
  channel's own engine failover gave up) is marked bad (``SOURCE_RETRY_S``) by the first player
  that reports it; players that report it after that simply follow to the source chosen then,
  so the list is gone through at most once per failure;
- the station goes back to its most preferred source only when it next starts with no players.

What a player writes meanwhile (headers at once, keep-alive packets while a source starts) is
the HTTP side's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Protocol

from ..engines.model import ContentRef
from ..logs import get_logger
from ..metrics import Metrics

log = get_logger(__name__)


class Sources(Protocol):
    """A station's sources and what is known of them (the lineup's ``ChannelSources``)."""

    def candidates(self) -> list[ContentRef]: ...

    def started(self, ref: ContentRef) -> None: ...

    def failed(self, ref: ContentRef) -> None: ...

    def stopped(self) -> None: ...

    @property
    def working(self) -> bool: ...


class SourceFailure(enum.Enum):
    """Why a station left a source, for its metrics."""

    REFUSED = "refused"  # the engine refused the content
    NO_START = "no_start"  # it did not start: no data in time, or no engine could play it
    ENDED = "ended"  # it played, then ended for good (engine failover gave up)


@dataclass(eq=False, slots=True)
class Station:
    """One lineup channel's playing state, shared by its players."""

    key: str
    number: int
    name: str
    sources: Sources
    players: int = 0
    current: ContentRef | None = None  # the source its players are sent to now
    failovers: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def describe(self) -> dict[str, object]:
        return {
            "number": self.number,
            "name": self.name,
            "current_source": self.current.value if self.current is not None else None,
            "players": self.players,
            "source_failovers": self.failovers,
            "working": self.sources.working,
        }


class Stations:
    """The stations players tune, by lineup key; one per channel for as long as it is tuned."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._by_key: dict[str, Station] = {}
        self.metrics = metrics or Metrics()

    def all(self) -> list[Station]:
        return list(self._by_key.values())

    def tuned(self) -> int:
        """Stations with players attached (each counts as one tuner)."""
        return sum(1 for station in self._by_key.values() if station.players > 0)

    def is_tuned(self, key: str) -> bool:
        station = self._by_key.get(key)
        return station is not None and station.players > 0

    @contextlib.asynccontextmanager
    async def tune(
        self, key: str, number: int, name: str, sources: Sources
    ) -> AsyncIterator[Station]:
        """Count one player of the station for as long as the block runs."""
        station = self._by_key.get(key)
        if station is None:
            station = self._by_key[key] = Station(key, number, name, sources)
        station.sources = sources  # a refresh of the list may have carried them to a new object
        station.players += 1
        try:
            yield station
        finally:
            station.players -= 1
            if station.players == 0 and self._by_key.get(key) is station:
                del self._by_key[key]
                station.current = None
                station.sources.stopped()  # its next start begins with the most preferred source

    async def source(
        self,
        station: Station,
        failed: ContentRef | None,
        why: SourceFailure | None = None,
        tried: Collection[ContentRef] = (),
    ) -> ContentRef | None:
        """The source a player of ``station`` plays next, after ``failed`` (None on its first
        start); None when every source is bad, or every one left was ``tried`` by this player
        since its last source that played (so the list is gone through once per failure even
        when ``SOURCE_RETRY_S`` is short)."""
        async with station.lock:
            if failed is not None and failed == station.current:
                self._leave(station, failed, why or SourceFailure.ENDED)
            if station.current is None:
                station.current = _first(station.sources.candidates(), tried)
                self._log_choice(station)
            return station.current if station.current not in tried else None

    @staticmethod
    def _log_choice(station: Station) -> None:
        if station.current is None:
            log.warning("station_without_source", station=station.number, name=station.name)
            return
        log.info(
            "station_source_chosen",
            station=station.number,
            name=station.name,
            source=station.current.value,
        )

    def playing(self, station: Station, ref: ContentRef) -> None:
        """``ref`` started for ``station``: it is the source that works."""
        if station.current == ref:
            station.sources.started(ref)

    def _leave(self, station: Station, ref: ContentRef, why: SourceFailure) -> None:
        station.sources.failed(ref)
        station.current = None
        station.failovers += 1
        self.metrics.source_failovers.labels(reason=why.value).inc()
        log.warning(
            "station_source_failed",
            station=station.number,
            name=station.name,
            source=ref.value,
            reason=why.value,
            players=station.players,
        )


def _first(candidates: list[ContentRef], tried: Collection[ContentRef]) -> ContentRef | None:
    return next((ref for ref in candidates if ref not in tried), None)
