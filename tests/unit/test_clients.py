"""Who a client is for the per-client limits, and the tables that remember clients: IPv6 clients
are prefixes, and the tables forget clients whose window passed and never outgrow their cap."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.ops.auth import REFUSAL_WINDOW_S, RefusalLimiter
from acestream_gateway.ops.clients import ClientWindows, client_key, forwarded_client
from acestream_gateway.ops.players import WINDOW_S, StartLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_ipv4_client_is_its_address_also_when_written_ipv4_mapped() -> None:
    assert client_key("192.0.2.7", 64) == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7", 64) == "192.0.2.7"
    assert client_key("192.0.2.7", 64) != client_key("192.0.2.8", 64)


def test_an_ipv6_client_is_its_prefix() -> None:
    assert client_key("2001:db8:1:2:aaaa::1", 64) == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:bbbb::9", 64) == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1", 64) == "2001:db8:1:3::/64"
    assert client_key("2001:db8:1:3::1", 48) == "2001:db8:1::/48"
    assert client_key("2001:db8::1", 128) == "2001:db8::1/128"


def test_what_is_no_ip_address_is_its_own_client() -> None:
    assert client_key(None, 64) == ""
    assert client_key("", 64) == ""
    assert client_key("/run/gateway.sock", 64) == "/run/gateway.sock"


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1), st.integers(1, 128))
def test_addresses_within_a_prefix_are_one_client_and_others_are_not(
    address: int, other: int, prefix: int
) -> None:
    ip = ipaddress.IPv6Address(address)
    if ip.ipv4_mapped is not None:
        return
    host_bits = 128 - prefix
    sibling = ipaddress.IPv6Address((address >> host_bits << host_bits) | (other % 2**host_bits))
    assert client_key(str(ip), prefix) == client_key(str(sibling), prefix)
    assert ipaddress.ip_address(str(sibling)) in ipaddress.ip_network(client_key(str(ip), prefix))


def test_rotating_ipv6_addresses_within_a_64_do_not_escape_the_start_limit() -> None:
    limiter = StartLimiter(2, Clock())
    assert limiter.allow("2001:db8:0:1::1", "one") is None
    assert limiter.allow("2001:db8:0:1::2", "two") is None
    assert limiter.allow("2001:db8:0:1::3", "three") is not None
    assert limiter.allow("2001:db8:0:2::3", "three") is None, "another /64 is another client"


def test_the_start_limiter_forgets_clients_whose_minute_passed() -> None:
    clock = Clock()
    limiter = StartLimiter(1, clock)
    for n in range(100):
        limiter.allow(f"198.51.100.{n}", "one")
    assert len(limiter) == 100
    clock.now += WINDOW_S
    limiter.allow("203.0.113.1", "one")
    assert len(limiter) == 1


windows_events = st.lists(
    st.tuples(st.floats(0, 20, allow_nan=False), st.integers(0, 30)), max_size=200
)


@given(windows_events, st.integers(1, 8))
def test_a_client_table_holds_only_clients_with_events_in_the_window_and_at_most_its_cap(
    events: list[tuple[float, int]], cap: int
) -> None:
    clock = Clock()
    table: ClientWindows[None] = ClientWindows(30.0, cap, clock)
    latest: dict[str, tuple[float, int]] = {}  # each client's latest event, in order
    for index, (gap, client) in enumerate(events):
        clock.now += gap
        table.add(str(client), None)
        latest[str(client)] = (clock.now, index)
        live = {c for c, (at, _) in latest.items() if clock.now - at < 30.0}
        assert len(table) == min(cap, len(live))
        # The most recent clients are the ones kept, with their events in the window.
        newest = sorted(live, key=lambda c: latest[c])[-min(cap, len(live)) :]
        for kept in newest:
            recent = table.recent(kept)
            assert recent
            assert all(clock.now - at < 30.0 for at, _ in recent)


def test_a_client_is_refused_at_once_after_a_few_wrong_keys_until_the_oldest_ages_out() -> None:
    clock = Clock()
    refusals = RefusalLimiter(allowed=3, clock=clock)
    assert refusals.retry_after_s("192.0.2.1") is None
    assert refusals.note("192.0.2.1") is False
    clock.now += 10
    assert refusals.note("192.0.2.1") is False
    assert refusals.retry_after_s("192.0.2.1") is None
    assert refusals.note("192.0.2.1") is True, "the third brings it to the limit"
    assert refusals.retry_after_s("192.0.2.1") == REFUSAL_WINDOW_S - 10
    assert refusals.retry_after_s("192.0.2.2") is None, "another client has its own count"
    clock.now += REFUSAL_WINDOW_S - 11
    assert refusals.retry_after_s("192.0.2.1") == 1
    clock.now += 1
    assert refusals.retry_after_s("192.0.2.1") is None


def test_wrong_keys_from_rotating_ipv6_addresses_count_for_their_prefix() -> None:
    refusals = RefusalLimiter(allowed=2, clock=Clock())
    refusals.note("2001:db8:0:1::a")
    refusals.note("2001:db8:0:1::b")
    assert refusals.retry_after_s("2001:db8:0:1::c") is not None


PROXY = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64")]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),  # the left is hearsay
        ("10.0.0.1", "198.51.100.7, 10.0.0.2", "198.51.100.7"),  # through two proxies
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "garbage", "10.0.0.1"),
        ("10.0.0.1", "198.51.100.7, garbage", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        ("fd00::1", "2001:db8::5", "2001:db8::5"),
        ("192.0.2.1", "198.51.100.7", "192.0.2.1"),  # not a trusted proxy: its header is not
        (None, "198.51.100.7", None),
    ],
)
def test_the_client_behind_a_trusted_proxy_is_the_nearest_untrusted_forwarded_address(
    peer: str | None, forwarded_for: str, client: str | None
) -> None:
    assert forwarded_client(peer, forwarded_for, PROXY) == client


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=5), st.ip_addresses(v=4).map(str))
def test_without_trusted_proxies_the_peer_is_always_the_client(
    forwarded: list[str], peer: str
) -> None:
    assert forwarded_client(peer, ", ".join(forwarded), []) == peer
