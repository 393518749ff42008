"""The playlist rewrite keeps every byte but the AceStream links."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.ops.playlist import rewrite

BASE = "http://gw:8000"
ID = "dd1e67078381739d14beca697356ab76d49d1a2d"

links = st.sampled_from(
    [
        (f"acestream://{ID}", f"{BASE}/ace/getstream?id={ID}"),
        (f"acestream://{ID.upper()}", f"{BASE}/ace/getstream?id={ID}"),
        (f"http://10.0.0.5:6878/ace/getstream?id={ID}", f"{BASE}/ace/getstream?id={ID}"),
        (
            f"http://engine:6878/ace/getstream?content_id={ID}&pid=7",
            f"{BASE}/ace/getstream?id={ID}",
        ),
        (
            f"https://x.example:6878/ace/getstream?infohash={ID}&file_indexes=2",
            f"{BASE}/ace/getstream?infohash={ID}&file_indexes=2",
        ),
    ]
)
others = st.sampled_from(
    [
        "#EXTM3U",
        '#EXTINF:-1 tvg-id="a.b" tvg-logo="http://logo/x.png" group-title="Sports",Chan 1',
        "",
        "   ",
        "http://example.com/live.ts",
        f"#EXTINF:-1,acestream://{ID}",
        "acestream://not-an-id",
        "http://engine:6878/ace/getstream?id=short",
        "ümlaut line",
    ]
)
endings = st.sampled_from(["\n", "\r\n"])


@given(st.lists(st.tuples(st.booleans(), links, others, endings), max_size=20), st.booleans())
def test_only_link_lines_change_and_they_point_at_the_gateway(
    lines: list[tuple[bool, tuple[str, str], str, str]], last_line_ended: bool
) -> None:
    source, expected = [], []
    for n, (is_link, (link, url), other, ending) in enumerate(lines):
        end = ending if last_line_ended or n < len(lines) - 1 else ""
        source.append((link if is_link else other) + end)
        expected.append((url if is_link else other) + end)
    out = rewrite("".join(source).encode(), BASE)
    assert out == "".join(expected).encode()


@given(st.binary(max_size=300))
def test_anything_without_links_comes_back_byte_for_byte(data: bytes) -> None:
    if b"acestream://" in data or b"/ace/getstream" in data:
        return
    assert rewrite(data, BASE) == data


def test_whitespace_around_a_link_is_kept() -> None:
    assert rewrite(f"  acestream://{ID}  \n".encode(), BASE + "/") == (
        f"  {BASE}/ace/getstream?id={ID}  \n".encode()
    )
