"""Per-source state of a channel: current, ok, bad until SOURCE_RETRY_S has passed, untried."""

from __future__ import annotations

from acestream_gateway.engines.model import ContentRef, InputKind
from acestream_gateway.ops.lineup.m3u import Entry, Playlist
from acestream_gateway.ops.lineup.numbering import Lineup, build_lineup
from acestream_gateway.ops.lineup.sources import ChannelSources, SourceBook, SourceState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def ref(n: int) -> ContentRef:
    return ContentRef(InputKind.CONTENT_ID, f"{n:040x}")


def states(sources: ChannelSources) -> list[tuple[str, float | None]]:
    return [(view.state.value, view.bad_until) for view in sources.views()]


def test_a_failed_source_is_skipped_by_later_starts_until_its_retry_time() -> None:
    clock = Clock()
    sources = ChannelSources([ref(1), ref(2), ref(3)], retry_s=300, clock=clock)
    assert sources.candidates() == [ref(1), ref(2), ref(3)]
    assert states(sources) == [("untried", None)] * 3
    sources.failed(ref(1))
    sources.failed(ref(2))
    sources.started(ref(3))
    assert sources.candidates() == [ref(3)]
    assert states(sources) == [("bad", 1300.0), ("bad", 1300.0), ("current", None)]
    clock.now = 1299.0
    assert sources.candidates() == [ref(3)]
    clock.now = 1300.0
    assert sources.candidates() == [ref(1), ref(2), ref(3)]
    assert states(sources) == [("untried", None), ("untried", None), ("current", None)]


def test_a_source_that_played_is_ok_once_another_is_current() -> None:
    sources = ChannelSources([ref(1), ref(2)], retry_s=10, clock=Clock())
    sources.started(ref(1))
    sources.failed(ref(1))
    sources.started(ref(2))
    assert [v.state for v in sources.views()] == [SourceState.BAD, SourceState.CURRENT]
    sources.stopped()
    assert [v.state for v in sources.views()] == [SourceState.BAD, SourceState.OK]


def test_every_source_bad_leaves_no_candidate() -> None:
    sources = ChannelSources([ref(1), ref(2)], retry_s=10, clock=Clock())
    sources.failed(ref(1))
    sources.failed(ref(2))
    assert sources.candidates() == []
    assert not sources.working


def lineup(*pairs: tuple[str, int]) -> Lineup:
    entries = tuple(Entry(line=0, name=name, source=ref(n)) for name, n in pairs)
    return build_lineup(Playlist(entries, ()))


def test_a_refresh_keeps_what_is_known_of_the_sources_that_stay() -> None:
    clock = Clock()
    book = SourceBook(retry_s=60, clock=clock)
    first = lineup(("A", 1), ("A", 2), ("B", 3))
    book.update(first)
    a = book.of(first.channels[0])
    a.failed(ref(1))
    a.started(ref(2))
    second = lineup(("A", 2), ("A", 1), ("A", 4))
    book.update(second)
    again = book.of(second.channels[0])
    assert [(v.ref, v.state) for v in again.views()] == [
        (ref(2), SourceState.CURRENT),
        (ref(1), SourceState.BAD),
        (ref(4), SourceState.UNTRIED),
    ]
    assert again.candidates() == [ref(2), ref(4)]
