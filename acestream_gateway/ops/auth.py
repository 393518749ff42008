"""Who may call the management (and, with PROTECT_READS, the read) endpoints: a decision alone.

The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and is compared in
constant time (``hmac.compare_digest``), so the answer's timing says nothing about how much of a
guess was right. No key configured: everything is allowed.

Guessing is also slowed down: after ``REFUSALS_ALLOWED`` wrong keys or player tokens within
``REFUSAL_WINDOW_S``, a client (``ops.clients``) is refused without any comparison until the
oldest of them leaves the window.
"""

from __future__ import annotations

import enum
import hmac
import time
from collections.abc import Callable, Mapping

from .clients import MAX_CLIENTS, ClientWindows, client_key

REFUSALS_ALLOWED = 5
REFUSAL_WINDOW_S = 60.0


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    MISSING = "missing"  # 401
    WRONG = "wrong"  # 403


class MalformedKey(ValueError):
    """A key or token that is no valid UTF-8 text (no key ever is): refused as a bad request."""


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, if any (a Bearer token wins over X-API-Key); raises
    :class:`MalformedKey` when the header is not valid UTF-8."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return well_formed(token.strip())
    key = headers.get("X-API-Key", "").strip()
    return well_formed(key) if key else None


def well_formed(text: str) -> str:
    """``text`` itself when it is valid UTF-8; the HTTP parser keeps undecodable bytes of a
    header or query as lone surrogates, which cannot be encoded back."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise MalformedKey("the key is not valid UTF-8") from None
    return text


def decide(expected: str | None, presented: str | None) -> Verdict:
    """Whether a request with ``presented`` may go on when the gateway's key is ``expected``."""
    if not expected:
        return Verdict.ALLOWED
    if presented is None:
        return Verdict.MISSING
    # surrogateescape: a string that slipped past ``well_formed`` still compares (as wrong),
    # never raises.
    if hmac.compare_digest(_raw(presented), _raw(expected)):
        return Verdict.ALLOWED
    return Verdict.WRONG


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class RefusalLimiter:
    """Wrong keys and tokens per client within a sliding window; past ``allowed`` the client is
    refused at once (the key not even compared) until the oldest refusal leaves the window."""

    def __init__(
        self,
        *,
        ipv6_prefix: int = 64,
        allowed: int = REFUSALS_ALLOWED,
        window_s: float = REFUSAL_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.allowed = allowed
        self._clock = clock
        self._refusals: ClientWindows[None] = ClientWindows(window_s, max_clients, clock)

    def __len__(self) -> int:
        """Clients remembered now."""
        return len(self._refusals)

    def retry_after_s(self, address: str | None) -> float | None:
        """None when the client at ``address`` may try a key; else seconds until it may."""
        refusals = self._refusals.recent(client_key(address, self.ipv6_prefix))
        if len(refusals) < self.allowed:
            return None
        oldest_counted = refusals[len(refusals) - self.allowed][0]
        return max(0.001, self._refusals.window_s - (self._clock() - oldest_counted))

    def note(self, address: str | None) -> bool:
        """A key or token from ``address`` was refused; True when this one brought the client to
        its limit (its next attempts are refused at once)."""
        client = client_key(address, self.ipv6_prefix)
        self._refusals.add(client, None)
        return len(self._refusals.recent(client)) >= self.allowed
