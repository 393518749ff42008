"""What is known of each source of a channel: which plays now, which worked, which failed and
until when it is left alone. Pure state with an injectable clock; the playing side drives it.

A source that failed is ``bad`` for ``retry_s`` (SOURCE_RETRY_S): later starts skip it until
then, after which it is tried again in its place in the order of preference.

How the playing side drives it: a start tries :meth:`ChannelSources.candidates` in order, calling
:meth:`~ChannelSources.failed` for each that fails and :meth:`~ChannelSources.started` for the one
that plays; when the current source dies mid-stream it calls ``failed`` for it and goes on with
the candidates left (each failed one is out of them, so the list is gone through at most once);
when the channel stops with no players it calls :meth:`~ChannelSources.stopped`, so its next
start begins again with the most preferred source that is not bad.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ...engines.model import ContentRef
from .numbering import Channel, Lineup

Clock = Callable[[], float]
"""Wall-clock seconds (``time.time``): ``bad_until`` is shown as a time of day."""


class SourceState(enum.Enum):
    CURRENT = "current"
    OK = "ok"
    BAD = "bad"
    UNTRIED = "untried"


@dataclass(frozen=True, slots=True)
class SourceView:
    """One source as ``/channels`` shows it."""

    ref: ContentRef
    state: SourceState
    bad_until: float | None


class ChannelSources:
    """The state of one channel's sources, in their order of preference."""

    def __init__(
        self, sources: Sequence[ContentRef], *, retry_s: float, clock: Clock = time.time
    ) -> None:
        self.sources = tuple(sources)
        self.retry_s = retry_s
        self._clock = clock
        self.current: ContentRef | None = None
        self._ok: set[ContentRef] = set()
        self._bad_until: dict[ContentRef, float] = {}

    def _is_bad(self, ref: ContentRef, now: float) -> bool:
        until = self._bad_until.get(ref)
        if until is None:
            return False
        if until <= now:
            del self._bad_until[ref]  # its time is up: tried again like any other
            return False
        return True

    def candidates(self) -> list[ContentRef]:
        """The sources a start tries, most preferred first, those still bad left out."""
        now = self._clock()
        return [ref for ref in self.sources if not self._is_bad(ref, now)]

    def started(self, ref: ContentRef) -> None:
        """``ref`` plays now for this channel."""
        self.current = ref
        self._ok.add(ref)
        self._bad_until.pop(ref, None)

    def failed(self, ref: ContentRef) -> None:
        """``ref`` failed to start or died: skipped until ``retry_s`` from now."""
        self._bad_until[ref] = self._clock() + self.retry_s
        if self.current == ref:
            self.current = None

    def stopped(self) -> None:
        """The channel stopped playing (no players left): no source is current."""
        self.current = None

    def views(self) -> list[SourceView]:
        now = self._clock()
        return [self._view(ref, now) for ref in self.sources]

    def _view(self, ref: ContentRef, now: float) -> SourceView:
        if self._is_bad(ref, now):
            return SourceView(ref, SourceState.BAD, self._bad_until[ref])
        if ref == self.current:
            return SourceView(ref, SourceState.CURRENT, None)
        state = SourceState.OK if ref in self._ok else SourceState.UNTRIED
        return SourceView(ref, state, None)

    @property
    def working(self) -> bool:
        """Whether any source may still be tried."""
        return bool(self.candidates())

    def carried_to(self, sources: Iterable[ContentRef]) -> ChannelSources:
        """The same knowledge for a channel whose list of sources changed on a refresh."""
        fresh = ChannelSources(tuple(sources), retry_s=self.retry_s, clock=self._clock)
        kept = set(fresh.sources)
        fresh._ok = self._ok & kept
        fresh._bad_until = {ref: t for ref, t in self._bad_until.items() if ref in kept}
        fresh.current = self.current if self.current in kept else None
        return fresh


class SourceBook:
    """Every channel's :class:`ChannelSources`, by channel key, carried across refreshes."""

    def __init__(self, *, retry_s: float, clock: Clock = time.time) -> None:
        self.retry_s = retry_s
        self._clock = clock
        self._by_key: dict[str, ChannelSources] = {}

    def update(self, lineup: Lineup) -> None:
        """Follow a new lineup: channels that stay keep their sources' state."""
        fresh: dict[str, ChannelSources] = {}
        for channel in lineup.channels:
            old = self._by_key.get(channel.key)
            if old is None:
                fresh[channel.key] = ChannelSources(
                    channel.sources, retry_s=self.retry_s, clock=self._clock
                )
            else:
                fresh[channel.key] = old.carried_to(channel.sources)
        self._by_key = fresh

    def of(self, channel: Channel) -> ChannelSources:
        found = self._by_key.get(channel.key)
        if found is None:  # a channel of another lineup than the one followed: fresh state
            found = ChannelSources(channel.sources, retry_s=self.retry_s, clock=self._clock)
            self._by_key[channel.key] = found
        return found
