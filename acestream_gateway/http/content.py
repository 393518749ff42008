"""Turning a player's query string into a channel reference, or a clear reason why not."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..engines.model import ContentRef, InputKind

_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_FILE_INDEXES = re.compile(r"^\d{1,4}(,\d{1,4}){0,63}$")

# Query names players use, by the engine input they mean; ``content_id`` is ``id``.
_NAMES = {
    "id": InputKind.CONTENT_ID,
    "content_id": InputKind.CONTENT_ID,
    "infohash": InputKind.INFOHASH,
    "url": InputKind.URL,
    "magnet": InputKind.MAGNET,
}


class BadInput(ValueError):
    """The request cannot name a channel; the message is shown to the player."""


def parse_content(query: Mapping[str, str], *, allow_url: bool) -> ContentRef:
    """The channel a ``getstream`` query names (``pid`` and unknown names are ignored)."""
    given = [(name, query[name].strip()) for name in _NAMES if name in query]
    if not given:
        raise BadInput("one of id, content_id, infohash, url or magnet is required")
    if len(given) > 1:
        raise BadInput(f"exactly one input is allowed, got {', '.join(n for n, _ in given)}")
    name, value = given[0]
    kind = _NAMES[name]
    if kind in (InputKind.CONTENT_ID, InputKind.INFOHASH):
        if not _HEX40.match(value):
            raise BadInput(f"{name} must be 40 hexadecimal characters")
        value = value.lower()
    elif not allow_url:
        raise BadInput(f"{name} input is disabled on this gateway (ALLOW_URL_INPUT)")
    elif kind is InputKind.MAGNET and not value.startswith("magnet:?"):
        raise BadInput("magnet must be a magnet: URI")
    elif kind is InputKind.URL and not re.match(r"^https?://\S+$", value):
        raise BadInput("url must be an http(s) URL")
    file_indexes = query.get("file_indexes", "0").strip() or "0"
    if not _FILE_INDEXES.match(file_indexes):
        raise BadInput("file_indexes must be comma-separated numbers")
    return ContentRef(kind, value, file_indexes)
