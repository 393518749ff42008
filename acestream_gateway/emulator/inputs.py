"""What a getstream request asks for: exactly one content input, resolved to an infohash.

The engine accepts a content id, an infohash, a transport-file URL or a magnet link. A real engine
looks content ids and URLs up in its P2P network; the emulator derives a stable infohash from the
input instead, so the same input always lands on the same session key. Errors carry the engine's
message strings, which the handlers put in the JSON ``error`` field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

INPUT_KEYS = ("id", "content_id", "infohash", "url", "magnet")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_BASE32_HASH = re.compile(r"^[A-Za-z2-7]{32}$")
_FILE_INDEXES = re.compile(r"^\d+(,\d+)*$")


class InputError(ValueError):
    """A request whose content input the engine rejects; str() is the engine's error message."""


@dataclass(frozen=True)
class ContentRef:
    """One resolved input: what was asked (kind, value) and the infohash that keys its session."""

    kind: str
    value: str
    infohash: str
    file_indexes: str

    def matches(self, ids: frozenset[str]) -> bool:
        """Whether a knob's id list names this content, by its input or by its infohash."""
        return "*" in ids or self.value.lower() in ids or self.infohash in ids


def parse_content(query: Mapping[str, str]) -> ContentRef:
    given = [key for key in INPUT_KEYS if query.get(key, "").strip()]
    if not given:
        raise InputError("missing content id")
    if len(given) > 1:
        raise InputError("only one of id, infohash, url or magnet may be given")
    kind = "id" if given[0] == "content_id" else given[0]
    value = query[given[0]].strip()
    file_indexes = query.get("file_indexes", "0").strip() or "0"
    if not _FILE_INDEXES.match(file_indexes):
        raise InputError("invalid file_indexes")
    return ContentRef(kind, value, _RESOLVERS[kind](value), file_indexes)


def _from_content_id(value: str) -> str:
    if not _HEX40.match(value):
        raise InputError("invalid content id")
    return _derived("content", value.lower())


def _from_infohash(value: str) -> str:
    if not _HEX40.match(value):
        raise InputError("invalid infohash")
    return value.lower()


def _from_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise InputError("invalid transport file url")
    return _derived("url", value)


def _from_magnet(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "magnet":
        raise InputError("invalid magnet link")
    for topic in parse_qs(parts.query).get("xt", []):
        if topic.lower().startswith("urn:btih:"):
            return _btih(topic[len("urn:btih:") :])
    raise InputError("invalid magnet link")


def _btih(text: str) -> str:
    if _HEX40.match(text):
        return text.lower()
    if _BASE32_HASH.match(text):
        try:
            return base64.b32decode(text.upper()).hex()
        except binascii.Error:
            pass
    raise InputError("invalid magnet link")


def _derived(kind: str, value: str) -> str:
    return hashlib.sha1(f"{kind}:{value}".encode(), usedforsecurity=False).hexdigest()


_RESOLVERS = {
    "id": _from_content_id,
    "infohash": _from_infohash,
    "url": _from_url,
    "magnet": _from_magnet,
}
