"""A Docker endpoint's VPN side: in VPN mode (``GLUETUN_CONTAINER_NAME``) its engines live in the
network namespaces of its VPN containers (``vpns.py``); outside it, in their own. This module
answers the questions the backend asks either way, so the backend never tests for VPN mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..engines.client import EngineClient
from ..engines.model import EngineAddress
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..settings import Settings
from ..tasks import Supervisor
from .blocks import Blocks
from .docker import DockerEngines, FleetError
from .gluetun import GluetunClient
from .ports import PortAllocator
from .specs import LABEL_VPN
from .vpn_events import VpnEventFollower
from .vpns import Vpns, VpnStatus

log = get_logger(__name__)


class VpnSide:
    """The endpoint's VPN containers, or none; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        pool: EnginePool,
        vpns: Vpns | None,
        follower: VpnEventFollower | None,
        blocks: Blocks | None = None,
    ) -> None:
        self._settings = settings
        self._blocks: Blocks = blocks or pool
        self.vpns = vpns
        self._follower = follower

    @classmethod
    def configured(
        cls,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        client: EngineClient,
        *,
        wake: Callable[[], None],
        blocks: Blocks | None = None,
    ) -> VpnSide:
        """The VPN side ``settings`` ask for; ``wake``: a VPN container changed (pass now)."""
        if not settings.vpn_mode:
            return cls(settings=settings, pool=pool, vpns=None, follower=None, blocks=blocks)
        key = settings.gluetun_api_key
        gluetun = GluetunClient(
            client.http,
            timeout_s=settings.health_probe_timeout_s,
            api_key=None if key is None else key.get_secret_value(),
        )
        vpns = Vpns(settings=settings, docker=docker, gluetun=gluetun, pool=pool)
        follower = VpnEventFollower(source=docker, names=vpns.names, wake=wake)
        return cls(settings=settings, pool=pool, vpns=vpns, follower=follower, blocks=blocks)

    def spawn_follower(self, tasks: Supervisor) -> None:
        """Follow the VPN containers' events under ``tasks`` (VPN mode only)."""
        if self._follower is not None:
            tasks.spawn_loop(self._follower.run, name="vpn container events")

    async def check(self) -> None:
        """At start: raise :class:`~.vpn.VpnError` for a VPN container that does not publish its
        share of the ports. Docker not answering leaves the question to the passes."""
        if self.vpns is None:
            return
        try:
            await self.vpns.refresh()
        except FleetError as exc:
            log.warning("vpn_check_deferred", reason=exc.message)
            return
        self.vpns.check_published()

    async def refresh(self, ports: PortAllocator) -> None:
        """Look at every VPN container again, then publish whether any can take an engine."""
        if self.vpns is not None:
            await self.vpns.refresh()
            self.publish_block(ports)

    def publish_block(self, ports: PortAllocator) -> None:
        """Block provisioning while no VPN can take an engine (vpn_disconnected)."""
        if self.vpns is None:
            return
        message = self.vpns.blocked_message(ports)
        if message is None:
            self._blocks.unblock(BlockedReason.VPN_DISCONNECTED)
        else:
            eta = self._settings.health_check_interval_s
            self._blocks.block(BlockedReason.VPN_DISCONNECTED, message, eta)

    def stranded(self, labels: Mapping[str, str]) -> str | None:
        """Why an engine's network namespace is not the one engines must be in now (VPN mode:
        the current run of its VPN container; else its own), or None."""
        if self.vpns is not None:
            return self.vpns.stranded(labels)
        if LABEL_VPN in labels:
            return "it was made behind a VPN container, and GLUETUN_CONTAINER_NAME is unset"
        return None

    def address(self, labels: Mapping[str, str], port: int) -> EngineAddress | None:
        """Where an engine behind a VPN is reached (None: where engines are reached anyway)."""
        return None if self.vpns is None else self.vpns.address(labels, port)

    def to_retire(self) -> list[str]:
        """Engines on a VPN's old forwarded port, or idle ones whose replacement is to get the
        new one (empty outside VPN mode)."""
        return [] if self.vpns is None else self.vpns.plan_forwarding()

    def status(self) -> tuple[VpnStatus, ...]:
        """Per VPN container: its id, whether it is connected and why not, its forwarded port,
        its share of the ports and the engines behind it (empty outside VPN mode)."""
        return () if self.vpns is None else self.vpns.status()
