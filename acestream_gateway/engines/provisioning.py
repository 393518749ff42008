"""Why the fleet cannot provision an engine now, kept in one place.

The fleet (breaker, Docker connection, image, VPN) writes it; the pool reads it to refuse a new
channel at once instead of letting it wait; the status endpoint and the logs show it. The reason
codes are the ones acestream-orchestrator's status uses, so scripts written for it keep working,
and one of the gateway's own for what the orchestrator has no part of (``no_swarm_node``).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class BlockedReason(enum.Enum):
    """The reason codes of ``provisioning.blocked_reason``."""

    CIRCUIT_BREAKER = "circuit_breaker"
    MAX_CAPACITY = "max_capacity"
    DOCKER_UNAVAILABLE = "docker_unavailable"
    IMAGE_UNAVAILABLE = "image_unavailable"
    VPN_DISCONNECTED = "vpn_disconnected"
    NO_SWARM_NODE = "no_swarm_node"  # the gateway's own: no Swarm node can take an engine


@dataclass(frozen=True, slots=True)
class Blocked:
    """One reason provisioning is blocked, with a human message and when to look again."""

    reason: BlockedReason
    message: str
    until: float | None = None  # monotonic time it may lift; None: unknown

    def eta_s(self, now: float) -> float | None:
        """Seconds until it may lift (0 when due), or None when nobody knows."""
        return None if self.until is None else max(0.0, self.until - now)


# Which reasons win when several hold at once: the one an operator must act on first.
_PRECEDENCE = (
    BlockedReason.DOCKER_UNAVAILABLE,
    BlockedReason.VPN_DISCONNECTED,
    BlockedReason.NO_SWARM_NODE,
    BlockedReason.IMAGE_UNAVAILABLE,
    BlockedReason.CIRCUIT_BREAKER,
    BlockedReason.MAX_CAPACITY,
)
_DEFAULT_RETRY_S = 30.0


class Provisioning:
    """The current blocks by reason; any part of the fleet sets and lifts its own."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._blocks: dict[BlockedReason, Blocked] = {}
        self.version = 0  # bumped on every change, so waiters can tell

    def set(self, reason: BlockedReason, message: str, eta_s: float | None = None) -> bool:
        """Block for ``reason``; True when this is news (a new reason or a new message).

        A new ETA alone is kept but is no news: a block repeated on every pass with its ETA
        counted afresh must not wake every waiter each time (``version`` still counts it).
        """
        until = None if eta_s is None else self._clock() + eta_s
        block = Blocked(reason, message, until)
        old = self._blocks.get(reason)
        self._blocks[reason] = block
        changed = old is None or (old.message, old.until) != (message, until)
        if changed:
            self.version += 1
        return old is None or old.message != message

    def lift(self, reason: BlockedReason) -> bool:
        """Lift the block for ``reason``; True when there was one."""
        if self._blocks.pop(reason, None) is None:
            return False
        self.version += 1
        return True

    def current(self) -> Blocked | None:
        """The block that matters most now, or None when provisioning can go ahead."""
        for reason in _PRECEDENCE:
            if reason in self._blocks:
                return self._blocks[reason]
        return None

    def blocks(self) -> list[Blocked]:
        return [self._blocks[r] for r in _PRECEDENCE if r in self._blocks]

    def eta_s(self, block: Blocked) -> float | None:
        """Seconds until ``block`` may lift (0 when due), None when nobody knows."""
        return block.eta_s(self._clock())

    def retry_after_s(self, block: Blocked) -> float:
        """A ``Retry-After`` for a refusal because of ``block``: its ETA, at least one second."""
        eta = block.eta_s(self._clock())
        if eta is None:
            return _DEFAULT_RETRY_S
        return float(max(1, math.ceil(eta)))
