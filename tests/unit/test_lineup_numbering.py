"""Channels from entries: grouping, numbers from tvg-chno, stable numbers across refreshes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.model import ContentRef, InputKind
from acestream_gateway.ops.lineup.m3u import Entry, Playlist, parse
from acestream_gateway.ops.lineup.numbering import Lineup, build_lineup, channel_key


def ref(n: int) -> ContentRef:
    return ContentRef(InputKind.CONTENT_ID, f"{n:040x}")


def entry(name: str, source: int, *, tvg_id: str = "", chno: int | None = None) -> Entry:
    return Entry(line=0, name=name, source=ref(source), tvg_id=tvg_id, chno=chno)


def lineup_of(*entries: Entry, previous: dict[str, int] | None = None) -> Lineup:
    return build_lineup(Playlist(tuple(entries), ()), previous)


def test_same_tvg_id_or_same_name_is_one_channel_with_sources_in_file_order() -> None:
    lineup = lineup_of(
        entry("BBC One", 1, tvg_id="bbc1"),
        entry("Sky", 2),
        entry("BBC 1 backup", 3, tvg_id="bbc1"),
        entry("  sky ", 4),
        entry("S K Y", 5),
        entry("BBC One", 6),  # no tvg-id: grouped by name, apart from the tvg-id channel
    )
    assert [(c.name, [s.value[-1] for s in c.sources]) for c in lineup.channels] == [
        ("BBC One", ["1", "3"]),
        ("Sky", ["2", "4", "5"]),
        ("BBC One", ["6"]),
    ]


def test_a_source_listed_twice_for_a_channel_is_tried_once() -> None:
    lineup = lineup_of(entry("A", 1), entry("A", 2), entry("a", 1))
    assert lineup.channels[0].sources == (ref(1), ref(2))


def test_tvg_chno_numbers_first_then_order_of_appearance_after_the_highest() -> None:
    lineup = lineup_of(entry("A", 1), entry("B", 2, chno=10), entry("C", 3), entry("D", 4, chno=2))
    assert [(c.name, c.number) for c in lineup.channels] == [
        ("D", 2),
        ("B", 10),
        ("A", 11),
        ("C", 12),
    ]


def test_a_taken_tvg_chno_goes_to_the_first_channel_and_the_clash_is_reported() -> None:
    lineup = lineup_of(entry("A", 1, chno=5), entry("B", 2, chno=5), entry("C", 3))
    assert {c.name: c.number for c in lineup.channels} == {"A": 5, "B": 6, "C": 7}
    (clash,) = lineup.clashes
    assert (clash.chno, clash.winner, clash.loser, clash.given) == (5, "name:a", "name:b", 6)


def test_channels_that_stay_keep_their_number_when_others_come_and_go() -> None:
    first = lineup_of(entry("A", 1), entry("B", 2), entry("C", 3))
    assert [c.number for c in first.channels] == [1, 2, 3]
    second = lineup_of(entry("New", 9), entry("C", 3), entry("A", 1), previous=first.numbers())
    assert {c.name: c.number for c in second.channels} == {"A": 1, "C": 3, "New": 2}


def test_numbers_from_a_real_list_with_a_duplicate_tvg_chno() -> None:
    text = (
        "#EXTM3U\n"
        '#EXTINF:-1 tvg-id="x" tvg-chno="3",X\nacestream://' + "1" * 40 + "\n"
        '#EXTINF:-1 tvg-id="y" tvg-chno="3",Y\nacestream://' + "2" * 40 + "\n"
        '#EXTINF:-1 tvg-id="x",X backup\nacestream://' + "3" * 40 + "\n"
    )
    lineup = build_lineup(parse(text.encode()))
    assert [(c.tvg_id, c.number, len(c.sources)) for c in lineup.channels] == [
        ("x", 3, 2),
        ("y", 4, 1),
    ]


entries = st.lists(
    st.builds(
        entry,
        st.sampled_from(["A", "a ", "B", "C", "Dee", "e", "F", "G"]),
        st.integers(0, 12),
        tvg_id=st.sampled_from(["", "", "t1", "t2", "t3"]),
        chno=st.none() | st.integers(1, 8),
    ),
    max_size=25,
)


@given(entries)
def test_numbers_are_unique_positive_and_every_channel_has_one(items: list[Entry]) -> None:
    lineup = lineup_of(*items)
    numbers = [c.number for c in lineup.channels]
    assert len(set(numbers)) == len(numbers)
    assert all(n > 0 for n in numbers)
    assert len(lineup.channels) == len({channel_key(e) for e in items})


@given(entries)
def test_sources_keep_the_order_of_the_file(items: list[Entry]) -> None:
    lineup = lineup_of(*items)
    for channel in lineup.channels:
        mine = [e.source for e in items if channel_key(e) == channel.key]
        assert channel.sources == tuple(dict.fromkeys(mine))


@given(entries)
def test_an_unnumbered_channel_keeps_its_number_while_nothing_claims_it(items: list[Entry]) -> None:
    numbers = lineup_of(*items).numbers()
    again = lineup_of(*items, previous=numbers)
    assert again.numbers() == numbers


@given(entries, entries)
def test_numbers_are_stable_across_refreshes_for_channels_that_stay(
    before: list[Entry], after: list[Entry]
) -> None:
    first = lineup_of(*before)
    second = lineup_of(*after, previous=first.numbers())
    numbers = [c.number for c in second.channels]
    assert len(set(numbers)) == len(numbers)
    claimed = {e.chno for e in after if e.chno is not None}
    explicit = {channel_key(e) for e in after if e.chno is not None}
    for channel in second.channels:
        old = first.numbers().get(channel.key)
        if old is not None and channel.key not in explicit and old not in claimed:
            assert channel.number == old
