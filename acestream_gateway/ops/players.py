"""Who may play, for gateways reachable from beyond a LAN: a player token and a start limit.

Players cannot set headers, so the token comes in the query (``token=…``); it is compared in
constant time and never logged. The limit counts, per client (an IPv4 address or an IPv6 prefix:
``ops.clients``), the distinct channels that client's requests *started* (joining a channel that
already plays costs nothing) within the last minute, so a stranger cannot make the gateway start
``MAX_ACTIVE_REPLICAS`` engines. Both are decisions alone; ``http/auth.py`` and
``http/players.py`` ask them and answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .auth import Verdict, decide
from .clients import MAX_CLIENTS, ClientWindows, client_key

WINDOW_S = 60.0


def token_verdict(expected: str | None, query_token: str | None) -> Verdict:
    """Whether a player request with ``query_token`` may play (no token configured: yes)."""
    return decide(expected, query_token or None)


class StartLimiter:
    """Distinct channels started per client (see ``ops.clients``) within a sliding minute;
    ``limit`` 0 is no limit."""

    def __init__(
        self,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        ipv6_prefix: int = 64,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.limit = limit
        self.ipv6_prefix = ipv6_prefix
        self._clock = clock
        self._starts: ClientWindows[str] = ClientWindows(WINDOW_S, max_clients, clock)

    def __len__(self) -> int:
        """Clients remembered now."""
        return len(self._starts)

    def allow(self, address: str, content_key: str) -> float | None:
        """Count a start of ``content_key`` by the client at ``address``: None when allowed,
        else the seconds until that client may start another channel (for ``Retry-After``)."""
        if self.limit <= 0:
            return None
        client = client_key(address, self.ipv6_prefix)
        latest = {key: at for at, key in self._starts.recent(client)}  # each channel's latest
        if content_key not in latest and len(latest) >= self.limit:
            # A start is allowed again once enough channels' latest starts left the minute.
            expiring = sorted(latest.values())[len(latest) - self.limit]
            return max(0.001, WINDOW_S - (self._clock() - expiring))
        self._starts.add(client, content_key)
        return None
