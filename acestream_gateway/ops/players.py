"""Who may play, for gateways reachable from beyond a LAN: a player token and a start limit.

Players cannot set headers, so the token comes in the query (``token=…``); it is compared in
constant time and never logged. The limit counts, per client address, the distinct channels that
client's requests *started* (joining a channel that already plays costs nothing) within the last
minute, so a stranger cannot make the gateway start ``MAX_ACTIVE_REPLICAS`` engines. Both are
decisions alone; ``http/players.py`` asks them and answers.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from .auth import Verdict, decide

WINDOW_S = 60.0
_MAX_CLIENTS = 10_000  # clients remembered at most; the least recently seen are forgotten


def token_verdict(expected: str | None, query_token: str | None) -> Verdict:
    """Whether a player request with ``query_token`` may play (no token configured: yes)."""
    return decide(expected, query_token or None)


class StartLimiter:
    """Distinct channels started per client within a sliding minute; ``limit`` 0 is no limit."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._starts: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()

    def allow(self, client: str, content_key: str) -> float | None:
        """Count a start of ``content_key`` by ``client``: None when allowed, else the seconds
        until the client may start another channel (for ``Retry-After``)."""
        if self.limit <= 0:
            return None
        now = self._clock()
        starts = self._starts.pop(client, None) or deque()
        while starts and now - starts[0][0] >= WINDOW_S:
            starts.popleft()
        latest = {key: at for at, key in starts}  # each channel's latest start counts
        if content_key not in latest and len(latest) >= self.limit:
            self._remember(client, starts)
            # A start is allowed again once enough channels' latest starts left the minute.
            expiring = sorted(latest.values())[len(latest) - self.limit]
            return max(0.001, WINDOW_S - (now - expiring))
        starts.append((now, content_key))
        self._remember(client, starts)
        return None

    def _remember(self, client: str, starts: deque[tuple[float, str]]) -> None:
        if starts:
            self._starts[client] = starts  # re-inserted last: the most recently seen
        while len(self._starts) > _MAX_CLIENTS:
            self._starts.popitem(last=False)
