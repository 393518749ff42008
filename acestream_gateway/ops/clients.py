"""Who a client is for the per-client limits, and a bounded table of what clients did lately.

A client is an IPv4 address, or an IPv6 prefix (``PLAYER_LIMIT_IPV6_PREFIX``, /64 by default):
one household or host gets a whole /64 and can take a new address from it for every request, so
counting IPv6 addresses one by one would let it pass any limit. Behind a reverse proxy every
request comes from the proxy's address, and ``X-Forwarded-For`` is believed only from the
proxies ``TRUSTED_PROXIES`` names (anyone else can write anything in it): then the client is the
nearest address in it that is not a trusted proxy (``forwarded_client``).

The table keeps clients in the order of their latest event, so those whose events all left the
window are dropped from its front as new events come (a stranger's one visit is forgotten a
window later), and a hard cap drops the least recent clients beyond it.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_CLIENTS = 10_000
"""Clients one table remembers at most; beyond, the least recently active are forgotten."""


def client_key(address: str | None, ipv6_prefix: int) -> str:
    """The client ``address`` belongs to: an IPv4 address (also when written IPv4-mapped), an
    IPv6 network of ``ipv6_prefix`` bits, or the text as it is when it is no IP address."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    network = ipaddress.IPv6Network(
        (int(ip) >> (128 - ipv6_prefix) << (128 - ipv6_prefix), ipv6_prefix)
    )
    return str(network)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def forwarded_client(
    peer: str | None, forwarded_for: str, trusted: Sequence[Network]
) -> str | None:
    """The client's address: ``peer`` itself, unless ``peer`` is a trusted proxy; then the
    nearest address of ``forwarded_for`` (``X-Forwarded-For``: each proxy appends the address it
    was reached from) that is not a trusted proxy. An item that is no address stops the walk at
    the last address known (what is left of it was written by whoever the proxy could not vouch
    for)."""
    known = peer
    while _trusted(known, trusted):
        items = forwarded_for.rsplit(",", 1)
        forwarded_for = items[0] if len(items) == 2 else ""
        try:
            known = str(ipaddress.ip_address(items[-1].strip()))
        except ValueError:
            break
    return known


def _trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    if not address or not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class ClientWindows(Generic[T]):
    """Each client's events of the last ``window_s`` seconds, for at most ``max_clients``."""

    def __init__(
        self,
        window_s: float,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_clients = max_clients
        self.clock = clock
        self._events: OrderedDict[str, deque[tuple[float, T]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def recent(self, client: str) -> list[tuple[float, T]]:
        """The client's events still within the window, oldest first."""
        events = self._events.get(client)
        if events is None:
            return []
        now = self.clock()
        while events and now - events[0][0] >= self.window_s:
            events.popleft()
        if not events:
            del self._events[client]
        return list(events)

    def add(self, client: str, item: T) -> None:
        """Note an event of ``client`` now; forget clients with nothing left in the window."""
        now = self.clock()
        events = self._events.pop(client, None) or deque()
        events.append((now, item))
        self._events[client] = events  # last: the most recent latest event
        while self._events:
            first = next(iter(self._events.values()))
            if now - first[-1][0] < self.window_s:
                break
            self._events.popitem(last=False)
        while len(self._events) > self.max_clients:
            self._events.popitem(last=False)
