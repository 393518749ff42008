"""Player input: every way to name a channel, and a clear reason for every bad one."""

from __future__ import annotations

import pytest

from acestream_gateway.engines.model import InputKind
from acestream_gateway.http.content import BadInput, parse_content

HEX = "dd1e67078381739d14beca697356ab76d49d1a2d"


def test_id_and_content_id_name_the_same_channel() -> None:
    a = parse_content({"id": HEX}, allow_url=False)
    b = parse_content({"content_id": HEX.upper(), "pid": "123"}, allow_url=False)
    assert a == b
    assert a.kind is InputKind.CONTENT_ID
    assert a.engine_params() == {"id": HEX, "file_indexes": "0"}


def test_infohash_and_file_indexes_are_passed_on() -> None:
    ref = parse_content({"infohash": HEX, "file_indexes": "1,2"}, allow_url=False)
    assert ref.engine_params() == {"infohash": HEX, "file_indexes": "1,2"}
    assert ref.key != parse_content({"infohash": HEX}, allow_url=False).key


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({}, "one of id"),
        ({"id": "xyz"}, "40 hexadecimal"),
        ({"id": HEX + "0"}, "40 hexadecimal"),
        ({"id": HEX, "infohash": HEX}, "exactly one input"),
        ({"url": "http://example.invalid/x.torrent"}, "disabled"),
        ({"id": HEX, "file_indexes": "a"}, "file_indexes"),
    ],
)
def test_bad_input_has_a_clear_reason(query: dict[str, str], reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        parse_content(query, allow_url=False)


def test_url_and_magnet_are_accepted_where_allowed() -> None:
    magnet = parse_content({"magnet": f"magnet:?xt=urn:btih:{HEX}"}, allow_url=True)
    assert magnet.kind is InputKind.MAGNET
    with pytest.raises(BadInput, match="http"):
        parse_content({"url": "ftp://x"}, allow_url=True)
