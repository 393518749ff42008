"""The guide limited to the lineup: kept channels renamed to their numbers, the rest dropped,
entities refused, and any way of cutting the input into chunks giving the same result."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.ops.lineup.epg import GuideError, GuideFilter

GUIDE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv generator-info-name="test">
  <channel id="One.uk"><display-name lang="en">One &amp; Co</display-name><icon src="http://i/1.png"/></channel>
  <channel id="two.uk"><display-name>Two</display-name></channel>
  <channel id="gone.uk"><display-name>Gone</display-name></channel>
  <programme start="20260101000000 +0000" stop="20260101010000 +0000" channel="one.uk">
    <title lang="en">News &lt;live&gt;</title><desc>First</desc>
  </programme>
  <programme start="20260101000000 +0000" stop="20260101010000 +0000" channel="gone.uk">
    <title>Gone show</title>
  </programme>
  <programme start="20260101010000 +0000" stop="20260101020000 +0000" channel="two.uk">
    <title>Film</title>
  </programme>
</tv>
"""
NUMBERS = {"one.uk": "1", "two.uk": "12"}


def filtered(chunks: list[bytes]) -> ET.Element:
    guide = GuideFilter(NUMBERS)
    for chunk in chunks:
        guide.feed(chunk)
    return ET.fromstring(guide.close())


def test_only_the_lineups_channels_stay_with_their_numbers_as_ids() -> None:
    root = filtered([GUIDE])
    assert root.tag == "tv"
    assert root.get("generator-info-name") == "test"
    assert [c.get("id") for c in root.iter("channel")] == ["1", "12"]
    assert [p.get("channel") for p in root.iter("programme")] == ["1", "12"]
    assert root.findtext("channel/display-name") == "One & Co"
    assert root.findall("channel/icon")[0].get("src") == "http://i/1.png"
    assert root.findtext("programme/title") == "News <live>"
    assert root.findall("programme")[0].get("start") == "20260101000000 +0000"


@given(st.lists(st.integers(1, len(GUIDE) - 1), max_size=8))
def test_any_chunking_gives_the_same_guide(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(GUIDE)]
    chunks = [GUIDE[a:b] for a, b in itertools.pairwise(points)]
    expected = ET.tostring(filtered([GUIDE]))
    assert ET.tostring(filtered(chunks)) == expected


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE tv [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><tv>&b;</tv>',
            "entities are refused",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE tv [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<tv>&x;</tv>",
            "entities are refused",
        ),
        (b"<rss><channel/></rss>", "not XMLTV"),
        (b"<tv><channel id='one.uk'>", "not well-formed"),
        (b"\x00\x01garbage", "not well-formed"),
        (b"", "not well-formed"),
    ],
)
def test_what_is_no_safe_xmltv_guide_is_refused(document: bytes, reason: str) -> None:
    with pytest.raises(GuideError, match=reason):
        filtered([document])
