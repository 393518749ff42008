"""Parsing an M3U channel list into entries, each a named channel and one AceStream source.

An entry is an ``#EXTINF`` line (attributes ``tvg-id``, ``tvg-name``, ``tvg-logo``, ``tvg-chno``,
``group-title``; the display name after the first comma outside quotes) followed by its source:
``acestream://<id>``, any ``http(s)://…/ace/getstream?id=|content_id=|infohash=`` URL whatever its
host, or a bare 40-hex id. An ``#EXTGRP:`` line in between names the group when ``group-title``
does not; other ``#`` lines (``#EXTVLCOPT``) are passed over. What cannot be used is returned as
a skip with its line number and reason, never raised: one bad entry must not cost the others.
Only text that is no playlist at all raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from ...engines.model import ContentRef, InputKind

_ATTRIBUTE = re.compile(r"""([A-Za-z][\w-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"',]+))""")
_ACESTREAM = re.compile(r"^acestream://([0-9a-fA-F]{40})/?$")
_ENGINE = re.compile(r"^https?://[^\s/?#]+(?:/[^\s?#]*)?/ace/getstream/?\?\S*$")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_FILE_INDEXES = re.compile(r"^\d{1,4}(,\d{1,4}){0,63}$")
_GUIDE_ATTRIBUTES = ("url-tvg", "x-tvg-url")


class PlaylistError(ValueError):
    """The text is not an M3U playlist at all; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One usable ``#EXTINF`` entry: who the channel is and one source of it."""

    line: int
    name: str
    source: ContentRef
    tvg_id: str = ""
    tvg_name: str = ""
    logo: str = ""
    group: str = ""
    chno: int | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """One entry that cannot be used, by the line it starts on."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Playlist:
    """What a channel list says: its usable entries in file order, its skips, its guide URL."""

    entries: tuple[Entry, ...]
    skipped: tuple[Skip, ...]
    guide_url: str | None = None


def source_ref(text: str) -> ContentRef | None:
    """The content a source line names, or None when it is no AceStream source."""
    text = text.strip()
    match = _ACESTREAM.match(text)
    if match is not None:
        return ContentRef(InputKind.CONTENT_ID, match[1].lower())
    if _HEX40.match(text):
        return ContentRef(InputKind.CONTENT_ID, text.lower())
    if _ENGINE.match(text) is None:
        return None
    query = dict(parse_qsl(urlsplit(text).query))
    indexes = query.get("file_indexes", "0")
    indexes = indexes if _FILE_INDEXES.match(indexes) else "0"
    for name, kind in (
        ("id", InputKind.CONTENT_ID),
        ("content_id", InputKind.CONTENT_ID),
        ("infohash", InputKind.INFOHASH),
    ):
        value = query.get(name, "")
        if _HEX40.match(value):
            return ContentRef(kind, value.lower(), indexes)
    return None


def _attributes(text: str) -> dict[str, str]:
    """``name="value"`` pairs (single quotes, or none for a value without spaces, too)."""
    return {
        m[1].lower(): next(v for v in m.groups()[1:] if v is not None)
        for m in _ATTRIBUTE.finditer(text)
    }


def _split_extinf(line: str) -> tuple[str, str]:
    """The attribute part and the display name of an ``#EXTINF:`` line (the name follows the
    first comma outside quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == ",":
            return line[:index], line[index + 1 :].strip()
    return line, ""


def _chno(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and 0 < int(value) < 1_000_000 else None


def _decode(data: bytes) -> str:
    if b"\x00" in data[:65536]:
        raise PlaylistError("not an M3U playlist: binary data (NUL bytes)")
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not (lines[0].startswith("#EXTM3U") or text.count("#EXTINF")):
        raise PlaylistError("not an M3U playlist: no #EXTM3U header and no #EXTINF entry")
    return text


def _guide_url(header: str) -> str | None:
    attributes = _attributes(header)
    for name in _GUIDE_ATTRIBUTES:
        for url in attributes.get(name, "").split(","):
            if re.match(r"^https?://\S+$", url.strip()):
                return url.strip()
    return None


def _entry(number: int, extinf: str, source: str, group: str = "") -> Entry | Skip:
    ref = source_ref(source)
    if ref is None:
        return Skip(number, f"not an AceStream source: {source[:80]!r}")
    attribute_text, display = _split_extinf(extinf)
    attributes = _attributes(attribute_text)
    name = display or attributes.get("tvg-name", "").strip()
    tvg_id = attributes.get("tvg-id", "").strip()
    if not name and not tvg_id:
        return Skip(number, "no channel name and no tvg-id")
    return Entry(
        line=number,
        name=name or tvg_id,
        source=ref,
        tvg_id=tvg_id,
        tvg_name=attributes.get("tvg-name", "").strip(),
        logo=attributes.get("tvg-logo", "").strip(),
        group=attributes.get("group-title", "").strip() or group,
        chno=_chno(attributes.get("tvg-chno", "")),
    )


def parse(data: bytes) -> Playlist:
    """The entries of an M3U channel list (raises :class:`PlaylistError` for non-playlists)."""
    text = _decode(data)
    entries: list[Entry] = []
    skipped: list[Skip] = []
    guide: str | None = None
    pending: tuple[int, str] | None = None  # the #EXTINF waiting for its source
    group = ""  # an #EXTGRP line's group for the pending entry
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXTM3U"):
            guide = guide or _guide_url(line)
        elif line.startswith("#EXTINF"):
            if pending is not None:
                skipped.append(Skip(pending[0], "no source after #EXTINF"))
            pending = (number, line.partition(":")[2])
            group = ""
        elif line.startswith("#EXTGRP:"):
            group = line.partition(":")[2].strip()
        elif line.startswith("#"):
            continue
        elif pending is None:
            skipped.append(Skip(number, "source without #EXTINF"))
        else:
            result = _entry(pending[0], pending[1], line, group)
            if isinstance(result, Entry):
                entries.append(result)
            else:
                skipped.append(result)
            pending = None
    if pending is not None:
        skipped.append(Skip(pending[0], "no source after #EXTINF"))
    return Playlist(tuple(entries), tuple(skipped), guide)
