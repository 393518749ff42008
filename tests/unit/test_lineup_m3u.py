"""Reading a channel list: attributes, every source form, and skips instead of failures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.model import ContentRef, InputKind
from acestream_gateway.ops.lineup.m3u import Entry, PlaylistError, parse, source_ref

A = "a" * 40
B = "b" * 40


def test_every_attribute_and_the_name_after_the_comma_are_read() -> None:
    playlist = parse(
        (
            '#EXTM3U url-tvg="http://guide.example/a.xml.gz,http://other/b.xml"\n'
            '#EXTINF:-1 tvg-id="one.uk" tvg-name="One HD" tvg-logo="http://l/1.png" '
            'tvg-chno="7" group-title="News, world",One, the first\n'
            f"acestream://{A}\n"
        ).encode()
    )
    assert playlist.guide_url == "http://guide.example/a.xml.gz"
    assert playlist.entries == (
        Entry(
            line=2,
            name="One, the first",
            source=ContentRef(InputKind.CONTENT_ID, A),
            tvg_id="one.uk",
            tvg_name="One HD",
            logo="http://l/1.png",
            group="News, world",
            chno=7,
        ),
    )


@pytest.mark.parametrize(
    ("line", "ref"),
    [
        (f"acestream://{A.upper()}", ContentRef(InputKind.CONTENT_ID, A)),
        (A, ContentRef(InputKind.CONTENT_ID, A)),
        (f"http://10.0.0.9:6878/ace/getstream?id={A}", ContentRef(InputKind.CONTENT_ID, A)),
        (
            f"https://x.example/ace/getstream?content_id={A}&pid=4",
            ContentRef(InputKind.CONTENT_ID, A),
        ),
        (
            f"http://h:6878/ace/getstream?infohash={B}&file_indexes=2",
            ContentRef(InputKind.INFOHASH, B, "2"),
        ),
        (f"http://proxy.lan/some/prefix/ace/getstream?id={A}", ContentRef(InputKind.CONTENT_ID, A)),
    ],
)
def test_every_source_form_names_its_content(line: str, ref: ContentRef) -> None:
    assert source_ref(line) == ref


@pytest.mark.parametrize(
    "line",
    [
        "http://example.com/stream.ts",
        "acestream://short",
        f"http://h/ace/getstream?id={A}x",
        f"http://h/ace/manifest.m3u8?id={A}",
        "rtmp://x/y",
    ],
)
def test_what_is_no_acestream_source_names_nothing(line: str) -> None:
    assert source_ref(line) is None


def test_unusable_entries_are_skipped_with_their_line_and_reason() -> None:
    playlist = parse(
        (
            "#EXTM3U\n"
            "#EXTINF:-1,No source\n"
            "#EXTINF:-1,Web\n"
            "http://example.com/stream.ts\n"
            f"{A}\n"
            "#EXTINF:-1,Good\n"
            "#EXTVLCOPT:http-user-agent=x\n"
            f"acestream://{A}\n"
            "#EXTINF:-1,\n"
            f"acestream://{B}\n"
            "#EXTINF:-1,Last without source\n"
        ).encode()
    )
    assert [e.name for e in playlist.entries] == ["Good"]
    assert [(s.line, s.reason.split(":")[0]) for s in playlist.skipped] == [
        (2, "no source after #EXTINF"),
        (3, "not an AceStream source"),
        (5, "source without #EXTINF"),
        (9, "no channel name and no tvg-id"),
        (11, "no source after #EXTINF"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 10,
        b"",
        b"just some text\nwithout entries\n",
        b"\x89PNG\r\n\x1a\n\x00\x00",
    ],
)
def test_what_is_no_playlist_is_one_clear_error(data: bytes) -> None:
    with pytest.raises(PlaylistError, match="not an M3U playlist"):
        parse(data)


@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_a_playlist_error(data: bytes) -> None:
    try:
        playlist = parse(data)
    except PlaylistError:
        return
    for entry in playlist.entries:
        assert len(entry.source.value) == 40


names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() and "," not in s
)


@given(st.lists(st.tuples(names, st.sampled_from([A, B])), max_size=20))
def test_each_entry_is_read_back_in_file_order(items: list[tuple[str, str]]) -> None:
    text = "#EXTM3U\n" + "".join(f"#EXTINF:-1,{name}\nacestream://{i}\n" for name, i in items)
    playlist = parse(text.encode())
    assert [(e.name, e.source.value) for e in playlist.entries] == [
        (name.strip(), i) for name, i in items
    ]
    assert playlist.skipped == ()


def test_unquoted_and_single_quoted_attributes_and_extgrp_are_read() -> None:
    playlist = parse(
        (
            "#EXTM3U\n"
            "#EXTINF:-1 tvg-chno=9 tvg-id='nine',Nine\n"
            "#EXTGRP:Sport\n"
            f"acestream://{A}\n"
            '#EXTINF:-1 group-title="News",Ten\n'
            "#EXTGRP:Ignored\n"
            f"acestream://{B}\n"
        ).encode()
    )
    assert [(e.name, e.chno, e.tvg_id, e.group) for e in playlist.entries] == [
        ("Nine", 9, "nine", "Sport"),
        ("Ten", None, "", "News"),
    ]
