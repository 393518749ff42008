"""What one Docker endpoint's container events do to its engines, and Docker's reachability.

The event follower (``events.py``) decides what an event means (``react``); this piece applies it
to the endpoint's engines at once, between two passes: an engine whose container died leaves the
pool (its claims are lost and fail over) while its port stays held until the container is gone; a
container that is gone frees its port; a failed Docker health check takes an engine out of
selection. It remembers the containers Docker reported dead until they are removed, so a listing
that still shows one running does not adopt it again. Docker going away blocks the endpoint's
provisioning (engines and their streams are left alone) and coming back lifts the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..engines.model import EngineState
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from .admission import Admission
from .blocks import Blocks
from .specs import ContainerRecord

log = get_logger(__name__)

Drop = Callable[[str, str], None]
"""An engine went without being asked to: out of the pool, with the reason (the backend's)."""


class EventReactions:
    """One endpoint's reactions to its containers' events; see the module docstring."""

    def __init__(
        self, *, name: str, pool: EnginePool, admission: Admission, blocks: Blocks, drop: Drop
    ) -> None:
        self._name = name
        self._pool = pool
        self._admission = admission
        self._blocks = blocks
        self._drop = drop
        self._died: set[str] = set()  # containers Docker reported dead, not yet removed
        self.docker_up = True
        self.down_reason: str | None = None

    def stopped(self, container_id: str, action: str) -> None:
        """An engine's container died (``die``, ``oom``): out of the pool now, so its claims are
        lost and fail over; its port stays held until the container is gone."""
        if self._pool.get(container_id) is not None:
            self._died.add(container_id)
        self._drop(container_id, f"docker reported {action}")

    def gone(self, container_id: str) -> None:
        """The container no longer exists: out of the pool, and its port is free."""
        self._drop(container_id, "its container is gone")
        self._admission.gone(container_id)

    def destroyed(self, container_id: str) -> None:
        """An engine's container is gone: out of the pool, and its port is free again."""
        self._died.discard(container_id)
        self.gone(container_id)
        self._admission.destroyed(container_id)  # a listing under way must not bring it back

    def unhealthy(self, container_id: str) -> None:
        """Docker's health check of an engine failed: no new claims, its claims are lost."""
        engine = self._pool.get(container_id)
        if engine is not None and engine.state is not EngineState.UNHEALTHY:
            log.warning("engine_unhealthy", engine=engine.name, source="docker_health_check")
            self._pool.set_state(container_id, EngineState.UNHEALTHY)

    def removed(self, container_id: str) -> None:
        """The container was removed, or is no longer listed: its death is no longer news."""
        self._died.discard(container_id)

    def reachable(self, reachable: bool, reason: str = "", retry_in_s: float = 0) -> None:
        """Docker answered, or could not be reached: while it cannot, new channels that need a new
        engine are refused at once; engines and their streams are left alone (logged once).

        The block's message goes to players, so it names no address; the log has the detail."""
        if reachable:
            self._blocks.unblock(BlockedReason.DOCKER_UNAVAILABLE)
        else:
            message = (
                "the Docker API cannot be reached or is too slow: no new engine can be started"
            )
            self._blocks.block(BlockedReason.DOCKER_UNAVAILABLE, message, retry_in_s or None)
        self.down_reason = None if reachable else reason
        if reachable != self.docker_up:
            self.docker_up = reachable
            if reachable:
                log.info("docker_reachable", endpoint=self._name)
            else:
                log.warning(
                    "docker_unreachable", endpoint=self._name, reason=reason, retry_in_s=retry_in_s
                )

    def with_deaths(self, records: list[ContainerRecord]) -> list[ContainerRecord]:
        """Docker may still list a container as running just after it reported it dead: trust
        the event, so the container is removed, not adopted again."""
        return [
            dataclasses.replace(r, state="exited") if r.id in self._died and r.running else r
            for r in records
        ]
