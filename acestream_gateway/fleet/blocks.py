"""Provisioning blocks per Docker endpoint, published to the pool.

Each endpoint's parts (its provisioner, its breaker, its VPNs, its Docker reachability) block and
lift their own reasons on the endpoint's view (:meth:`EndpointBlocks.of`). A reason reaches the
pool, where players see it, only while *every* endpoint is blocked: an endpoint that cannot start
engines blocks only its own share, and new engines go to the others. With one endpoint, its blocks
are the pool's, word for word; with several, each message names its endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason, Provisioning


class Blocks(Protocol):
    """Where a part of the fleet blocks and lifts provisioning (the pool, or an endpoint's view)."""

    def block(self, reason: BlockedReason, message: str, eta_s: float | None = None) -> None: ...

    def unblock(self, reason: BlockedReason) -> None: ...


class EndpointBlocks:
    """The blocks of every endpoint, and what of them the pool shows; see the module docstring."""

    def __init__(
        self, pool: EnginePool, names: Sequence[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pool = pool
        self._by_name = {name: Provisioning(clock) for name in names}
        self._published: set[BlockedReason] = set()

    def of(self, name: str) -> EndpointView:
        return EndpointView(self, name)

    def blocked(self, name: str) -> str | None:
        """Why the endpoint cannot start engines now (its block that matters most), or None."""
        block = self._by_name[name].current()
        return None if block is None else block.message

    def set(self, name: str, reason: BlockedReason, message: str, eta_s: float | None) -> None:
        self._by_name[name].set(reason, message, eta_s)
        self._publish()

    def lift(self, name: str, reason: BlockedReason) -> None:
        if self._by_name[name].lift(reason) or (
            reason in self._published and not self._all_blocked()
        ):
            self._publish()

    def _all_blocked(self) -> bool:
        return all(p.current() is not None for p in self._by_name.values())

    def _publish(self) -> None:
        shown: dict[BlockedReason, tuple[list[str], float | None]] = {}
        if self._all_blocked():
            several = len(self._by_name) > 1
            for name, provisioning in self._by_name.items():
                for block in provisioning.blocks():
                    messages, eta = shown.setdefault(block.reason, ([], None))
                    messages.append(
                        f"endpoint {name}: {block.message}" if several else block.message
                    )
                    mine = provisioning.eta_s(block)
                    later = mine if eta is None else eta if mine is None else max(eta, mine)
                    shown[block.reason] = (messages, later)
        for reason in self._published - set(shown):
            self._pool.unblock(reason)
        for reason, (messages, eta) in shown.items():
            self._pool.block(reason, "; ".join(messages), eta)
        self._published = set(shown)


class EndpointView:
    """One endpoint's blocks (:class:`Blocks`)."""

    def __init__(self, blocks: EndpointBlocks, name: str) -> None:
        self._blocks = blocks
        self._name = name

    def block(self, reason: BlockedReason, message: str, eta_s: float | None = None) -> None:
        self._blocks.set(self._name, reason, message, eta_s)

    def unblock(self, reason: BlockedReason) -> None:
        self._blocks.lift(self._name, reason)
