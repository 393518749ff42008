"""Each engine start until its engine is ready, and what the starts tell the circuit breaker.

A start the admission point let through is an attempt from the moment its container exists until
its engine answers (a success) or never will (a failure: it never became ready, or it went before
it did). Failures that say something about engines count toward the breaker, which pauses
provisioning when they keep coming; an engine the gateway removed itself while it started says
nothing of engines, and gives a half-open breaker's trial back. While the breaker is not closed,
provisioning is blocked (``circuit_breaker``) with the last failure and when it tries again.
"""

from __future__ import annotations

from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..metrics import Metrics
from .blocks import Blocks
from .breaker import BreakerState, CircuitBreaker

log = get_logger(__name__)


class StartAttempts:
    """The starts still to become ready, and the breaker they feed; see the module docstring."""

    def __init__(self, *, breaker: CircuitBreaker, metrics: Metrics, blocks: Blocks) -> None:
        self.breaker = breaker
        self._metrics = metrics
        self._blocks = blocks
        self._attempts: dict[str, int] = {}  # engines still to become ready -> trial held, or 0
        self._last_failure = ""

    def begin(self, engine_id: str, trial: int) -> None:
        """The engine's container exists; ``trial``: the breaker trial its start holds, or 0."""
        self._attempts[engine_id] = trial

    def trials(self) -> list[int]:
        """The breaker trials held by starts still to become ready (0: none)."""
        return list(self._attempts.values())

    def done(self, engine_id: str, *, ok: bool, reason: str = "", counts: bool = True) -> None:
        """A started engine became ready (``ok``), or never will; others are ignored. Without
        ``counts`` its end says nothing about engines (the gateway removed it itself)."""
        trial = self._attempts.pop(engine_id, None)
        if trial is None:
            return  # adopted, or already decided
        if ok:
            self._succeeded()
        elif counts:
            self.failed(reason)
        elif trial:
            self.breaker.give_back(trial)

    def failed(self, reason: str) -> None:
        """A start failed for a reason that says something about engines."""
        self._last_failure = reason
        self._metrics.provisioning_failures.inc()
        if self.breaker.record_failure():
            log.warning(
                "provisioning_breaker_opened",
                reason=reason,
                open_for_s=self.breaker.open_for_s,
                openings=self.breaker.openings,
            )
        self.publish()

    def publish(self) -> None:
        """Show the breaker in the provisioning blocks: blocked while not closed."""
        if self.breaker.state is BreakerState.CLOSED:
            self._blocks.unblock(BlockedReason.CIRCUIT_BREAKER)
            return
        message = (
            f"engines keep failing to start (last: {self._last_failure}); "
            f"provisioning paused, next attempt within {self.breaker.open_for_s:g} s"
        )
        self._blocks.block(BlockedReason.CIRCUIT_BREAKER, message, eta_s=self.breaker.eta_s())

    def _succeeded(self) -> None:
        was = self.breaker.state
        self.breaker.record_success()
        if was is not BreakerState.CLOSED:
            log.info("provisioning_breaker_closed")
        self.publish()
