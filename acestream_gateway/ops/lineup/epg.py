"""An XMLTV guide limited to the lineup's channels, with channel ids that match the lineup.

The guide is parsed as it streams in (expat, fed chunk by chunk), keeping only the ``<channel>``
and ``<programme>`` elements of channels the lineup has (matched by ``tvg-id``, case-insensitively)
and rewriting their ids to the lineup's number (``GuideNumber``), so a media server pairs guide
and tuner without a mapping step. It is parsed safely: a document that declares entities (the
"billion laughs" and external-entity attacks) is refused, and nothing is ever fetched by the
parser; the size is bounded by whoever feeds it (``fetch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from .numbering import Lineup

_KEYS = {"channel": "id", "programme": "channel"}


class GuideError(ValueError):
    """The guide is no XMLTV document the gateway reads; the message says why."""


def guide_numbers(lineup: Lineup) -> dict[str, str]:
    """Guide channel id (case-folded ``tvg-id``) → the lineup's number as a guide id."""
    return {ch.tvg_id.casefold(): str(ch.number) for ch in lineup.channels if ch.tvg_id}


class GuideFilter:
    """Feed it the guide's bytes in order, then :meth:`close` gives the filtered document."""

    def __init__(self, numbers: Mapping[str, str]) -> None:
        self._numbers = numbers
        self._out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>\n']
        self._depth = 0
        self._keeping = 0  # depth at which the kept element started; 0: not keeping
        self.channels = 0
        self.programmes = 0
        parser = expat.ParserCreate()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.EntityDeclHandler = self._refuse_entities
        parser.ExternalEntityRefHandler = self._refuse_external
        self._parser = parser

    def feed(self, data: bytes) -> None:
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            raise GuideError(f"not well-formed XML: {exc}") from None

    def close(self) -> bytes:
        """The filtered guide (raises :class:`GuideError` for a truncated or empty one)."""
        try:
            self._parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise GuideError(f"not well-formed XML: {exc}") from None
        return "".join(self._out).encode()

    def _refuse_entities(self, name: str, *_: object) -> None:
        raise GuideError(f"declares the entity {name!r}; entities are refused")

    def _refuse_external(self, *_: object) -> int:
        raise GuideError("refers to an external entity; entities are refused")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._depth == 1:
            if name != "tv":
                raise GuideError(f"the root element is <{name}>, not XMLTV's <tv>")
            self._out.append(_tag(name, attributes) + "\n")
        elif self._keeping:
            self._out.append(_tag(name, attributes))
        elif self._depth == 2 and name in _KEYS:
            number = self._numbers.get(attributes.get(_KEYS[name], "").casefold())
            if number is not None:
                self._keeping = self._depth
                self._out.append(_tag(name, {**attributes, _KEYS[name]: number}))
                if name == "channel":
                    self.channels += 1
                else:
                    self.programmes += 1

    def _end(self, name: str) -> None:
        if self._depth == 1:
            self._out.append(f"</{name}>\n")
        elif self._keeping:
            self._out.append(f"</{name}>")
            if self._depth == self._keeping:
                self._keeping = 0
                self._out.append("\n")
        self._depth -= 1

    def _text(self, data: str) -> None:
        if self._keeping and self._depth >= self._keeping:
            self._out.append(escape(data))


def _tag(name: str, attributes: Mapping[str, str]) -> str:
    shown = "".join(f" {key}={quoteattr(value)}" for key, value in attributes.items())
    return f"<{name}{shown}>"
