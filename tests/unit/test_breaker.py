"""The provisioning circuit breaker: opens after the threshold, backs off, one half-open trial."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acestream_gateway.fleet.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(b: CircuitBreaker) -> BreakerState:
    """Read afresh each time (a plain ``b.state`` would be narrowed by mypy across calls)."""
    return b.state


def breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(threshold=threshold, recovery_s=30, max_backoff_s=100, clock=clock)


def test_it_opens_after_the_threshold_of_consecutive_failures_only() -> None:
    clock = Clock()
    b = breaker(clock)
    assert not b.record_failure()
    assert not b.record_failure()
    b.record_success()
    assert not b.record_failure()
    assert not b.record_failure()
    assert state(b) is BreakerState.CLOSED
    assert b.permits(5) == 5
    assert b.record_failure()
    assert state(b) is BreakerState.OPEN
    assert b.permits(5) == 0
    assert b.eta_s() == 30


def test_half_open_lets_exactly_one_attempt_through_and_success_closes_it() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure()
    clock.now += 30
    assert state(b) is BreakerState.HALF_OPEN
    assert b.eta_s() == 0
    assert b.permits(3) == 1
    assert b.permits(3) == 0
    b.record_success()
    assert state(b) is BreakerState.CLOSED
    assert b.eta_s() is None
    assert b.permits(3) == 3


def test_a_half_open_attempt_that_did_not_happen_is_given_back() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure()
    clock.now += 30
    assert b.permits(1) == 1
    b.give_back()
    assert b.permits(1) == 1
    assert state(b) is BreakerState.HALF_OPEN


def test_a_trial_of_an_earlier_opening_gives_back_nothing_of_the_current_one() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure()
    clock.now += 30
    assert b.permits(1) == 1
    first = b.trials
    b.record_failure()  # another attempt failed: open again, the first trial still under way
    clock.now += 60
    assert b.permits(1) == 1
    assert b.trials != first
    b.give_back(first)  # the first trial ends, having said nothing
    assert b.trial_running, "the current trial is still under way"
    assert b.permits(1) == 0
    b.give_back(b.trials)
    assert not b.trial_running
    assert b.permits(1) == 1


def test_each_failed_trial_doubles_the_open_time_up_to_the_cap() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure()
    seen = []
    for _ in range(4):
        seen.append(b.eta_s())
        clock.now += b.open_for_s
        assert b.permits(1) == 1
        assert b.record_failure()
    assert seen == [30, 60, 100, 100]


def test_a_failure_of_an_attempt_started_before_the_opening_does_not_extend_it() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure()
    clock.now += 10
    assert not b.record_failure()
    assert b.eta_s() == 20


def test_the_open_state_ends_exactly_at_its_deadline_whatever_the_float_rounding() -> None:
    # (100.01 + 40.0) - 100.01 < 40.0 in floating point: state and ETA must still agree.
    clock = Clock()
    clock.now = 100.01
    b = CircuitBreaker(threshold=1, recovery_s=40, max_backoff_s=40, clock=clock)
    assert b.record_failure()
    clock.now = 100.01 + 40.0
    assert b.eta_s() == 0.0
    assert state(b) is BreakerState.HALF_OPEN


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(threshold=0, recovery_s=1, max_backoff_s=1)


class BreakerMachine(RuleBasedStateMachine):
    """The breaker against a plain model of the rules, through any sequence of events."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.threshold = 2
        self.b = CircuitBreaker(threshold=2, recovery_s=5, max_backoff_s=40, clock=self.clock)
        self.failures = 0
        self.open_until: float | None = None
        self.open_for = 0.0
        self.trial_taken = False

    def model_state(self) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if self.clock.now < self.open_until else BreakerState.HALF_OPEN

    @rule(seconds=st.floats(0, 50, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(wanted=st.integers(0, 5))
    def ask(self, wanted: int) -> None:
        got = self.b.permits(wanted)
        state = self.model_state()
        if state is BreakerState.CLOSED:
            assert got == wanted
        elif state is BreakerState.OPEN or self.trial_taken or wanted == 0:
            assert got == 0
        else:
            assert got == 1
            self.trial_taken = True

    @rule()
    def success(self) -> None:
        self.b.record_success()
        self.failures, self.open_until, self.open_for, self.trial_taken = 0, None, 0.0, False

    @rule()
    def failure(self) -> None:
        opened = self.b.record_failure()
        state = self.model_state()
        if state is BreakerState.OPEN:
            assert not opened
            return
        if state is BreakerState.HALF_OPEN:
            self.open_for = min(40.0, self.open_for * 2)
        else:
            self.failures += 1
            if self.failures < self.threshold:
                assert not opened
                return
            self.open_for = 5.0
        assert opened
        self.failures, self.trial_taken = 0, False
        self.open_until = self.clock.now + self.open_for

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.b.state is self.model_state()
        if self.open_until is None:
            assert self.b.eta_s() is None
        else:
            eta = self.b.eta_s()
            assert eta is not None
            assert eta == pytest.approx(max(0.0, self.open_until - self.clock.now))

    @invariant()
    def open_time_stays_within_its_bounds(self) -> None:
        if self.b.state is not BreakerState.CLOSED:
            assert 5.0 <= self.b.open_for_s <= 40.0

    @precondition(lambda self: self.model_state() is BreakerState.CLOSED)
    @invariant()
    def closed_means_fewer_failures_than_the_threshold(self) -> None:
        assert self.b.failures < self.threshold


TestBreakerStateMachine = BreakerMachine.TestCase
