"""Following the VPN containers' Docker events: each asks for a pass at once.

A VPN container that restarts strands the engines in its old network namespace, and one that dies
or turns unhealthy can take no new engine; the fleet looks again at every VPN container at the
next pass, so each of their starts, deaths, removals and health changes wakes the loop now instead
of at its interval. Docker's reachability is the engine follower's to report.
"""

from __future__ import annotations

from collections.abc import Callable

from ..logs import get_logger
from .docker import ContainerEvent, Filters
from .events import EventFollower, EventSource

log = get_logger(__name__)

VPN_ACTIONS = ("start", "die", "destroy", "health_status")


def vpn_event_filter(names: tuple[str, ...]) -> Filters:
    """Docker event filters for the VPN containers' starts, deaths, removals and health."""
    return {"type": ["container"], "container": list(names), "event": list(VPN_ACTIONS)}


class VpnEventFollower(EventFollower):
    """Follows the VPN containers' events: each wakes the reconciler, which looks again at once
    (a restarted VPN strands the engines in its old namespace)."""

    def __init__(self, *, source: EventSource, names: tuple[str, ...], wake: Callable[[], None]):
        super().__init__(source=source, fleet=_Waker(wake), filters=vpn_event_filter(names))
        self._wake = wake

    def apply(self, event: ContainerEvent) -> None:
        log.info("vpn_container_event", vpn=event.name, action=event.action, health=event.health)
        self._wake()


class _Waker:
    """The follower's fleet hooks for VPN containers: all of them mean "look again". Docker's
    reachability is the engine follower's to report."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def relist(self) -> None:
        self._wake()

    def container_stopped(self, container_id: str, action: str) -> None:
        self._wake()

    def container_destroyed(self, container_id: str) -> None:
        self._wake()

    def container_unhealthy(self, container_id: str) -> None:
        self._wake()

    def docker_reachable(self, reachable: bool, reason: str = "", retry_in_s: float = 0) -> None:
        return None
