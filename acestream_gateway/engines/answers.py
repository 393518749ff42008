"""What the engine's JSON answers mean, read without trusting them: pure functions, no I/O.

An engine is a third-party program that hangs, dies and (behind a broken proxy, or a hostile
network) answers anything. Every answer is parsed here so that anything unusable — not JSON,
larger than ``MAX_ANSWER_BYTES``, nested deeper than ``MAX_ANSWER_DEPTH``, missing what the call
needs, an unusable URL — raises :class:`EngineBadAnswer` (an :class:`EngineError`), never another
exception: one broken engine must not break a health round, the stat poller or a channel's
failover. URLs the engine returns are built from the ``Host`` we used, so only their path is kept
and joined to the engine's own address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .model import EngineAddress

# The engine's JSON answers are a few hundred bytes (a stat with its peers: a few KiB); 256 KiB
# leaves room for any engine version and bounds what a broken one can make us hold.
MAX_ANSWER_BYTES = 256 * 1024
# The deepest answer the engine gives has three levels (``response.livepos.*``); nesting past
# this is refused before anything walks it.
MAX_ANSWER_DEPTH = 16

_UNKNOWN_SESSION = "unknown playback session id"


class EngineError(Exception):
    """An engine call failed; ``reason`` is short and safe to show a player (no address, no
    exception text), ``detail`` says more for the logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


class EngineUnreachable(EngineError):
    """The engine did not answer (connection refused, reset, timeout)."""


class EngineNotConnected(EngineUnreachable):
    """No connection to the engine could be made: the request never reached it."""


class EngineTimeout(EngineUnreachable):
    """The engine did not answer in time; it may still act on the request later."""


class EngineBadAnswer(EngineError):
    """The engine answered, with something unusable: not JSON, too large, too deeply nested, or
    lacking what the call needs."""


class EngineRefused(EngineError):
    """The engine answered with an error for this content (unknown or broken channel)."""


@dataclass(frozen=True, slots=True)
class EngineSession:
    """One playback session on one engine, with its URLs rebased on the engine's address."""

    address: EngineAddress
    pid: str
    playback_url: str
    stat_url: str
    command_url: str
    infohash: str
    playback_session_id: str
    is_live: bool


def parse_answer(raw: bytes) -> dict[str, Any]:
    """An engine's JSON answer as an object; :class:`EngineBadAnswer` for anything else (too
    large, not JSON, not an object, nested deeper than ``MAX_ANSWER_DEPTH``)."""
    if len(raw) > MAX_ANSWER_BYTES:
        raise EngineBadAnswer("engine answer too large", f"{len(raw)} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:  # nesting past the interpreter's stack: refused all the same
        raise EngineBadAnswer("engine answer nested too deeply") from None
    except ValueError as exc:  # not JSON, not text, or an integer past Python's digit limit
        raise EngineBadAnswer("engine answered with malformed JSON", str(exc)[:200]) from None
    if not isinstance(body, dict):
        raise EngineBadAnswer("engine answered with unexpected JSON", type(body).__name__)
    if _deeper_than(body, MAX_ANSWER_DEPTH):
        raise EngineBadAnswer("engine answer nested too deeply")
    return body


def _deeper_than(value: object, limit: int) -> bool:
    """Whether containers in ``value`` nest more than ``limit`` levels (walked without recursion,
    so the walk itself cannot overflow the stack)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def rebase(address: EngineAddress, url: str) -> str:
    """Keep only the path and query of an engine URL and put the engine's own address in front."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed netloc, such as an unclosed IPv6 bracket
        parts = None
    if parts is None or not parts.path.startswith("/"):
        raise EngineBadAnswer("engine returned an unusable URL", repr(url)[:200])
    return address.base_url + parts.path + (f"?{parts.query}" if parts.query else "")


def session_from_answer(address: EngineAddress, pid: str, body: dict[str, Any]) -> EngineSession:
    """The session a ``getstream?format=json`` answer describes; :class:`EngineRefused` when the
    engine refused the content."""
    response = body.get("response")
    if body.get("error") or not isinstance(response, dict):
        error = str(body.get("error") or "no response")[:200]
        raise EngineRefused(f"engine refused the channel: {error}")
    for name in ("playback_url", "stat_url", "command_url"):
        if not isinstance(response.get(name), str):
            raise EngineBadAnswer(f"engine answer lacks {name}")
    return EngineSession(
        address=address,
        pid=pid,
        playback_url=rebase(address, response["playback_url"]),
        stat_url=rebase(address, response["stat_url"]),
        command_url=rebase(address, response["command_url"]),
        infohash=_text(response.get("infohash")),
        playback_session_id=_text(response.get("playback_session_id")),
        is_live=bool(response.get("is_live", 1)),
    )


def stop_confirmed(body: dict[str, Any]) -> None:
    """Nothing when a stop answer confirms the session is gone (stopped, or unknown to the
    engine); :class:`EngineError` otherwise."""
    error = body.get("error")
    if error and _UNKNOWN_SESSION not in str(error):
        raise EngineError(f"engine did not stop the session: {str(error)[:200]}")


def stat_from_answer(body: dict[str, Any]) -> dict[str, Any] | None:
    """A stat answer's figures, or None when the engine no longer knows the session."""
    response = body.get("response")
    return response if isinstance(response, dict) else None


def version_from_answer(body: dict[str, Any]) -> str:
    """The version a ``get_version`` answer names."""
    result = body.get("result")
    if not isinstance(result, dict) or "version" not in result:
        raise EngineBadAnswer("engine version answer lacks a version")
    return _text(result["version"])[:100]


def status_from_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A ``get_status`` answer's result: a JSON object means the engine's API answers."""
    result = body.get("result")
    if not isinstance(result, dict):
        raise EngineBadAnswer("engine status answer lacks a result")
    return result


def _text(value: object) -> str:
    """A scalar of an answer as text (absent: empty); containers are not text."""
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)
