"""The channel list and its guide as the gateway holds them: loaded at start, refreshed every
CHANNELS_REFRESH_S by one owned loop, the last good copy kept when a refresh fails.

The playing side asks it for a channel by number (:meth:`ChannelService.channel`) and for that
channel's source state (:meth:`ChannelService.sources`), which outlives refreshes for channels
that stay.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from ...logs import get_logger
from .epg import GuideError, GuideFilter, guide_numbers
from .fetch import FetchError, fetch, read_all
from .m3u import PlaylistError, parse
from .numbering import Channel, Lineup, build_lineup
from .sources import ChannelSources, Clock, SourceBook

log = get_logger(__name__)

PLAYLIST_MAX_BYTES = 16 * 1024 * 1024
"""Largest channel list read (inflated): lists of thousands of channels are a few MB."""
GUIDE_MAX_BYTES = 512 * 1024 * 1024
"""Largest guide read (inflated); what is kept of it is only the lineup's channels."""


@dataclass(slots=True)
class LoadState:
    """How the last loads of one document went, for the status and the dashboard."""

    location: str | None = None
    loaded_at: float | None = None
    attempted_at: float | None = None
    error: str | None = None
    failures: int = 0
    facts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "location": self.location,
            "loaded_at": self.loaded_at,
            "attempted_at": self.attempted_at,
            "error": self.error,
            "failures": self.failures,
            **self.facts,
        }


class ChannelService:
    """The lineup, its sources' state and the filtered guide; see the module docstring."""

    def __init__(
        self,
        *,
        location: str | None,
        guide_location: str | None,
        http: aiohttp.ClientSession,
        timeout_s: float,
        retry_s: float,
        clock: Clock = time.time,
    ) -> None:
        self.lineup = Lineup()
        self.guide: bytes | None = None
        self.list_state = LoadState(location)
        self.guide_state = LoadState(guide_location)
        self._fixed_guide = guide_location
        self._http = http
        self._timeout_s = timeout_s
        self._clock = clock
        self._book = SourceBook(retry_s=retry_s, clock=clock)

    @property
    def configured(self) -> bool:
        return self.list_state.location is not None

    def channel(self, number: int) -> Channel | None:
        return self.lineup.channel(number)

    def sources(self, channel: Channel) -> ChannelSources:
        return self._book.of(channel)

    @property
    def guide_location(self) -> str | None:
        return self._fixed_guide or self.lineup.guide_url

    async def refresh(self) -> None:
        """Load the list, then the guide; each keeps its last good copy when it fails."""
        if not self.configured:
            return
        await self._refresh_list()
        await self._refresh_guide()

    async def _refresh_list(self) -> None:
        state = self.list_state
        assert state.location is not None
        state.attempted_at = self._clock()
        try:
            data = await read_all(
                state.location,
                http=self._http,
                max_bytes=PLAYLIST_MAX_BYTES,
                timeout_s=self._timeout_s,
            )
            playlist = await asyncio.to_thread(parse, data)
        except (FetchError, PlaylistError) as exc:
            self._failed(
                state, "channel_list_refresh_failed", str(exc), kept=len(self.lineup.channels)
            )
            return
        lineup = build_lineup(playlist, self.lineup.numbers())
        for skip in lineup.skipped:
            log.warning("channel_entry_skipped", line=skip.line, reason=skip.reason)
        for clash in lineup.clashes:
            log.warning(
                "channel_number_taken",
                chno=clash.chno,
                kept_by=clash.winner,
                channel=clash.loser,
                given=clash.given,
            )
        self._book.update(lineup)
        self.lineup = lineup
        state.loaded_at, state.error, state.failures = state.attempted_at, None, 0
        state.facts = {
            "channels": len(lineup.channels),
            "sources": sum(len(ch.sources) for ch in lineup.channels),
            "skipped": len(lineup.skipped),
            "number_clashes": len(lineup.clashes),
        }
        log.info("channel_list_loaded", location=state.location, **state.facts)

    async def _refresh_guide(self) -> None:
        state = self.guide_state
        state.location = self.guide_location
        if state.location is None:
            return
        state.attempted_at = self._clock()
        guide = GuideFilter(guide_numbers(self.lineup))

        async def feed(data: bytes) -> None:
            await asyncio.to_thread(guide.feed, data)

        try:
            await fetch(
                state.location,
                feed,
                http=self._http,
                max_bytes=GUIDE_MAX_BYTES,
                timeout_s=self._timeout_s,
            )
            self.guide = await asyncio.to_thread(guide.close)
        except (FetchError, GuideError) as exc:
            self._failed(state, "guide_refresh_failed", str(exc), kept=self.guide is not None)
            return
        state.loaded_at, state.error, state.failures = state.attempted_at, None, 0
        state.facts = {"channels": guide.channels, "programmes": guide.programmes}
        log.info("guide_loaded", location=state.location, **state.facts)

    def _failed(self, state: LoadState, event: str, reason: str, *, kept: object) -> None:
        state.error = reason
        state.failures += 1
        log.error(event, location=state.location, reason=reason, last_good_kept=kept)

    async def run(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` until cancelled (one owned loop of the app)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh()

    def status(self) -> dict[str, object]:
        return {
            "configured": self.configured,
            "list": self.list_state.as_json(),
            "guide": self.guide_state.as_json(),
        }
