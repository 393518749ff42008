"""Who may call the management (and, with PROTECT_READS, the read) endpoints: a decision alone.

The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and is compared in
constant time (``hmac.compare_digest``), so the answer's timing says nothing about how much of a
guess was right. No key configured: everything is allowed.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    MISSING = "missing"  # 401
    WRONG = "wrong"  # 403


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, if any (a Bearer token wins over X-API-Key)."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = headers.get("X-API-Key", "").strip()
    return key or None


def decide(expected: str | None, presented: str | None) -> Verdict:
    """Whether a request with ``presented`` may go on when the gateway's key is ``expected``."""
    if not expected:
        return Verdict.ALLOWED
    if presented is None:
        return Verdict.MISSING
    if hmac.compare_digest(presented.encode(), expected.encode()):
        return Verdict.ALLOWED
    return Verdict.WRONG
