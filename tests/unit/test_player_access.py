"""Who may play: the player token and the per-client limit on channels started per minute."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.ops.auth import Verdict
from acestream_gateway.ops.players import WINDOW_S, StartLimiter, token_verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_token_configured_every_player_may_play() -> None:
    assert token_verdict(None, None) is Verdict.ALLOWED
    assert token_verdict(None, "anything") is Verdict.ALLOWED


def test_a_configured_token_must_be_given_and_right() -> None:
    assert token_verdict("s3cret", None) is Verdict.MISSING
    assert token_verdict("s3cret", "") is Verdict.MISSING
    assert token_verdict("s3cret", "s3cre") is Verdict.WRONG
    assert token_verdict("s3cret", "s3cret") is Verdict.ALLOWED


def test_no_limit_allows_any_number_of_starts() -> None:
    limiter = StartLimiter(0)
    assert all(limiter.allow("c", f"k{n}") is None for n in range(1000))


def test_a_client_at_its_limit_waits_until_its_oldest_start_leaves_the_minute() -> None:
    clock = Clock()
    limiter = StartLimiter(2, clock)
    assert limiter.allow("a", "one") is None
    clock.now += 10
    assert limiter.allow("a", "two") is None
    clock.now += 5
    assert limiter.allow("a", "three") == WINDOW_S - 15
    assert limiter.allow("b", "three") is None, "another client has its own count"
    clock.now += WINDOW_S - 15
    assert limiter.allow("a", "three") is None


def test_starting_a_channel_again_is_not_a_new_channel_but_renews_its_count() -> None:
    clock = Clock()
    limiter = StartLimiter(2, clock)
    assert limiter.allow("a", "one") is None
    assert limiter.allow("a", "two") is None
    clock.now += 30
    assert limiter.allow("a", "one") is None, "the same channel again is not a new one"
    wait = limiter.allow("a", "three")
    assert wait == WINDOW_S - 30, "two leaves the minute first; one was started again"
    clock.now += wait
    assert limiter.allow("a", "three") is None


events = st.lists(
    st.tuples(
        st.floats(0, 30, allow_nan=False),  # seconds since the previous event
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([f"k{n}" for n in range(6)]),
    ),
    max_size=80,
)


@given(events, st.integers(1, 4))
def test_no_client_ever_starts_more_distinct_channels_in_a_minute_than_its_limit(
    sequence: list[tuple[float, str, str]], limit: int
) -> None:
    clock = Clock()
    limiter = StartLimiter(limit, clock)
    allowed: list[tuple[float, str, str]] = []
    for gap, client, key in sequence:
        clock.now += gap
        wait = limiter.allow(client, key)
        recent = {k for t, c, k in allowed if c == client and clock.now - t < WINDOW_S}
        if key in recent or len(recent) < limit:
            assert wait is None
            allowed.append((clock.now, client, key))
        else:
            assert wait is not None
            assert 0 < wait <= WINDOW_S
            # Exactly when the limit allows a new channel again.
            later = {
                k: t for t, c, k in sorted(allowed) if c == client and clock.now - t < WINDOW_S
            }
            expiring = sorted(later.values())[len(later) - limit]
            assert abs(wait - (WINDOW_S - (clock.now - expiring))) < 1e-6
        for who in ("a", "b", "c"):
            window = {k for t, c, k in allowed if c == who and clock.now - t < WINDOW_S}
            assert len(window) <= limit
