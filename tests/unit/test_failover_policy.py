"""How hard a playing channel retries: no pause before the first attempt, then doubling."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.streaming.channel import FailoverPolicy


def test_the_defaults_wait_half_a_second_then_double() -> None:
    policy = FailoverPolicy()
    assert [policy.delay_s(attempt) for attempt in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]


@given(st.floats(0.001, 60.0, allow_nan=False), st.integers(2, 40))
def test_the_first_attempt_goes_at_once_and_each_later_pause_doubles(
    backoff_s: float, attempts: int
) -> None:
    policy = FailoverPolicy(attempts=attempts, backoff_s=backoff_s)
    assert policy.delay_s(1) == 0.0
    assert policy.delay_s(2) == backoff_s
    delays = [policy.delay_s(attempt) for attempt in range(2, attempts + 1)]
    for earlier, later in itertools.pairwise(delays):
        assert later == 2 * earlier


def test_no_attempt_before_the_first_waits() -> None:
    policy = FailoverPolicy(backoff_s=3.0)
    assert policy.delay_s(0) == 0.0
    assert policy.delay_s(-1) == 0.0
