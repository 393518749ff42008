"""Grouping entries into channels and giving each channel its number, purely.

Entries with the same ``tvg-id`` (or, without one, the same display name compared case- and
space-insensitively) are one channel; its sources keep file order, which is the order of
preference. A channel's number is its ``tvg-chno``; without one, the number it had in the
previous lineup if that is still free (numbers stay put across refreshes for channels that stay),
else the lowest free number after the highest ``tvg-chno``, in order of first appearance. Two
channels that claim the same ``tvg-chno``: the first in the file keeps it, the other is numbered
as if it had none, and the clash is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...engines.model import ContentRef
from .m3u import Entry, Playlist, Skip


@dataclass(frozen=True, slots=True)
class Channel:
    """One numbered channel and its sources, most preferred first."""

    number: int
    key: str
    name: str
    tvg_id: str
    logo: str
    group: str
    sources: tuple[ContentRef, ...]


@dataclass(frozen=True, slots=True)
class Clash:
    """A ``tvg-chno`` two channels claim: ``loser`` got ``given`` instead."""

    chno: int
    winner: str
    loser: str
    given: int


@dataclass(frozen=True, slots=True)
class Lineup:
    """The channels by number, and what the list held that could not be used as written."""

    channels: tuple[Channel, ...] = ()
    skipped: tuple[Skip, ...] = ()
    clashes: tuple[Clash, ...] = ()
    guide_url: str | None = None
    _by_number: dict[int, Channel] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_number.update({channel.number: channel for channel in self.channels})

    def channel(self, number: int) -> Channel | None:
        return self._by_number.get(number)

    def numbers(self) -> dict[str, int]:
        """Each channel's number by its key: the input of the next numbering."""
        return {channel.key: channel.number for channel in self.channels}


def channel_key(entry: Entry) -> str:
    """What makes two entries one channel."""
    if entry.tvg_id:
        return f"tvg-id:{entry.tvg_id}"
    return "name:" + "".join(entry.name.split()).casefold()


@dataclass(slots=True)
class _Group:
    key: str
    entries: list[Entry]

    @property
    def chno(self) -> int | None:
        return next((e.chno for e in self.entries if e.chno is not None), None)

    def channel(self, number: int) -> Channel:
        first = self.entries[0]
        sources = tuple(dict.fromkeys(e.source for e in self.entries))
        return Channel(
            number=number,
            key=self.key,
            name=first.name,
            tvg_id=first.tvg_id,
            logo=next((e.logo for e in self.entries if e.logo), ""),
            group=next((e.group for e in self.entries if e.group), ""),
            sources=sources,
        )


def _groups(entries: tuple[Entry, ...]) -> list[_Group]:
    groups: dict[str, _Group] = {}
    for entry in entries:
        key = channel_key(entry)
        groups.setdefault(key, _Group(key, [])).entries.append(entry)
    return list(groups.values())


def build_lineup(playlist: Playlist, previous: Mapping[str, int] | None = None) -> Lineup:
    """The numbered channels of a playlist, keeping ``previous`` numbers where possible."""
    previous = previous or {}
    groups = _groups(playlist.entries)
    taken: dict[int, _Group] = {}
    unnumbered: list[_Group] = []
    clashed: dict[str, int] = {}
    for group in groups:
        chno = group.chno
        if chno is None:
            unnumbered.append(group)
        elif chno in taken:
            clashed[group.key] = chno
            unnumbered.append(group)
        else:
            taken[chno] = group
    rest = []
    for group in unnumbered:
        number = previous.get(group.key)
        if number is not None and number not in taken:
            taken[number] = group
        else:
            rest.append(group)
    next_number = max((g.chno or 0 for g in taken.values()), default=0) + 1
    for group in rest:
        while next_number in taken:
            next_number += 1
        taken[next_number] = group
    number_of = {group.key: number for number, group in taken.items()}
    clashes = tuple(
        Clash(chno, taken[chno].key, key, number_of[key]) for key, chno in clashed.items()
    )
    channels = tuple(sorted((g.channel(number_of[g.key]) for g in groups), key=_number))
    return Lineup(channels, playlist.skipped, clashes, playlist.guide_url)


def _number(channel: Channel) -> int:
    return channel.number
