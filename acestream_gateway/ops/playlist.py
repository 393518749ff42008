"""Rewriting a playlist's AceStream links to this gateway's player URLs, and nothing else.

People have M3U playlists full of ``acestream://<id>`` links and engine URLs
(``http://<host>:6878/ace/getstream?id=...``, ``content_id=``, ``infohash=``). Each such link line
becomes ``<base>/ace/getstream?id=<id>`` (``infohash=`` for an infohash, ``file_indexes`` kept);
every other byte, ``#EXTINF`` lines and their attributes, blank lines and line endings included,
stays exactly as it was. Nothing is fetched: the text is all there is.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

_ACESTREAM = re.compile(rb"^acestream://([0-9a-fA-F]{40})/?$")
_ENGINE = re.compile(rb"^https?://[^\s/?#]+/ace/getstream/?\?\S*$")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_FILE_INDEXES = re.compile(r"^\d{1,4}(,\d{1,4}){0,63}$")


def player_url(base: str, link: bytes, token: str | None = None) -> bytes | None:
    """The gateway URL for one link (carrying the player ``token`` when given), or None when it
    is not an AceStream link."""
    match = _ACESTREAM.match(link)
    if match is not None:
        return _gateway(base, {"id": match[1].decode().lower()}, token)
    if _ENGINE.match(link) is None:
        return None
    query = dict(parse_qsl(urlsplit(link.decode("ascii", "replace")).query))
    for name, kind in (("id", "id"), ("content_id", "id"), ("infohash", "infohash")):
        value = query.get(name, "")
        if _HEX40.match(value):
            params = {kind: value.lower()}
            indexes = query.get("file_indexes", "")
            if _FILE_INDEXES.match(indexes) and indexes != "0":
                params["file_indexes"] = indexes
            return _gateway(base, params, token)
    return None


def _gateway(base: str, params: dict[str, str], token: str | None) -> bytes:
    if token:
        params = {**params, "token": token}
    return f"{base.rstrip('/')}/ace/getstream?{urlencode(params)}".encode()


def rewrite(playlist: bytes, base: str, token: str | None = None) -> bytes:
    """The playlist with its AceStream link lines pointing at ``base`` (with the player
    ``token`` when given); see the module docstring."""
    out = []
    for line in playlist.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        ending = line[len(body) :]
        stripped = body.strip()
        url = None if stripped.startswith(b"#") else player_url(base, stripped, token)
        if url is None:
            out.append(line)
            continue
        start = body.index(stripped)
        out.append(body[:start] + url + body[start + len(stripped) :] + ending)
    return b"".join(out)
