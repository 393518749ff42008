"""The circuit breaker of provisioning: stop starting engines that keep failing, try again later.

An image that cannot start, a Docker that refuses every create or an engine that never answers
would otherwise be retried on every reconcile pass forever. Consecutive provisioning failures open
the breaker; it stays open for a recovery time that doubles after each failed trial (up to a cap);
then it is half-open and lets exactly one attempt through; a success closes it and starts over.
Pure apart from its injectable clock, so every transition is tested without waiting.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    """The breaker's state as the status endpoint shows it."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts provisioning outcomes and says how many attempts may start now."""

    def __init__(
        self,
        *,
        threshold: int,
        recovery_s: float,
        max_backoff_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or recovery_s <= 0 or max_backoff_s <= 0:
            raise ValueError("threshold must be >= 1 and the timeouts positive")
        self.threshold = threshold
        self.recovery_s = recovery_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self.failures = 0  # consecutive failures while closed
        self.openings = 0  # times it opened since it last closed
        self.open_for_s = 0.0  # how long the current (or last) opening lasts
        self._open_until: float | None = None  # when the current opening ends (clock time)
        self._trial = False  # the half-open attempt is under way
        self.trials = 0  # half-open attempts let through so far: the number of the latest

    @property
    def state(self) -> BreakerState:
        if self._open_until is None:
            return BreakerState.CLOSED
        # One deadline, compared as it is: the state and the ETA can never disagree.
        if self._clock() < self._open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def trial_running(self) -> bool:
        """The half-open attempt was let through and has not ended yet."""
        return self._trial

    def eta_s(self) -> float | None:
        """Seconds until the breaker lets an attempt through (0 when half-open), None if closed."""
        if self._open_until is None:
            return None
        return max(0.0, self._open_until - self._clock())

    def permits(self, wanted: int) -> int:
        """How many of ``wanted`` attempts may start now; the half-open one is taken by this."""
        state = self.state
        if state is BreakerState.CLOSED:
            return max(0, wanted)
        if state is BreakerState.OPEN or self._trial or wanted < 1:
            return 0
        self._trial = True
        self.trials += 1
        return 1

    def give_back(self, trial: int | None = None) -> None:
        """The permitted half-open attempt did not happen (no port, Docker unreachable), or
        said nothing about engines. With ``trial`` (its number), only when it is still the
        current one: a trial of an earlier opening gives back nothing."""
        if trial is None or trial == self.trials:
            self._trial = False

    def record_success(self) -> None:
        """An engine was provisioned: whatever the state, provisioning works again."""
        self.failures = 0
        self.openings = 0
        self.open_for_s = 0.0
        self._open_until = None
        self._trial = False

    def record_failure(self) -> bool:
        """A provisioning attempt failed; True when this opened the breaker (again)."""
        state = self.state
        if state is BreakerState.OPEN:
            return False  # an attempt started before it opened: the opening already counts it
        if state is BreakerState.HALF_OPEN:
            self._open(min(self.max_backoff_s, self.open_for_s * 2.0))
            return True
        self.failures += 1
        if self.failures < self.threshold:
            return False
        self._open(min(self.max_backoff_s, self.recovery_s))
        return True

    def _open(self, duration_s: float) -> None:
        self.openings += 1
        self.open_for_s = duration_s
        self._open_until = self._clock() + duration_s
        self._trial = False
        self.failures = 0
