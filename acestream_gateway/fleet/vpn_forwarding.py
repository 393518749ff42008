"""Which engine behind each VPN has its forwarded port, and the P2P port a new engine takes.

A VPN's forwarded port (Gluetun's port forwarding, as its control server reports it) is the P2P
port of exactly one engine behind it, fixed when that engine's container is made. Each pass the
decision of ``placement.plan_forwarding`` (pure) is taken per VPN over its engines: the engines to
replace (on an old forwarded port, or an idle one so that its replacement gets the port), and
whether the next engine started behind it gets the port. A start that takes it is remembered until
it is over, so no second start takes it meanwhile. Ports a new engine must not take (the forwarded
port and the engines' own P2P ports within the share) are ``placement.ports_to_avoid``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..engines.model import EngineState
from ..engines.pool import EngineLoad, EnginePool
from ..settings import PortRange, Settings
from .placement import P2pEngine, plan_forwarding, ports_to_avoid, usable_forwarded_port
from .specs import LABEL_P2P_PORT, LABEL_PORT, LABEL_VPN, Namespace, port_label
from .vpn import Tunnel

_HOLDING_STATES = (EngineState.READY, EngineState.STARTING)  # engines that may hold a P2P port

Behind = Callable[[], dict[str, list[str]]]
"""Engine ids in the pool per VPN."""


class Forwarding:
    """The forwarded ports of the VPNs and who has them; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        pool: EnginePool,
        tunnels: Mapping[str, Tunnel],
        shares: Mapping[str, PortRange],
        behind: Behind,
    ) -> None:
        """``tunnels`` and ``shares``: each VPN's, as the VPNs keep them (read at each use)."""
        self._settings = settings
        self._pool = pool
        self._tunnels = tunnels
        self._shares = shares
        self._behind = behind
        self.forwarding_to: dict[str, int] = {}  # VPN -> forwarded port a start is taking
        self.give_forwarded: set[str] = set()  # VPNs whose next engine gets the forwarded port

    def forwarded(self, name: str) -> int | None:
        """The forwarded port an engine behind this VPN may take as its P2P port."""
        port = self._tunnels[name].forwarded_port
        return usable_forwarded_port(port, self._settings.port_range_host)

    def plan(self) -> list[str]:
        """Decide per VPN which engine has its forwarded port (``placement.plan_forwarding``);
        the ready engines to replace for it."""
        loads = {x.engine.id: x for x in self._pool.snapshot()}
        retire: list[str] = []
        for name, ids in self._behind().items():
            alive = [loads[i] for i in ids if loads[i].engine.state in _HOLDING_STATES]
            plan = plan_forwarding(
                (self._p2p_engine(load) for load in alive),
                self.forwarded(name),
                starting_with_it=name in self.forwarding_to,
            )
            if plan.give_next:
                self.give_forwarded.add(name)
            else:
                self.give_forwarded.discard(name)
            retire += [i for i in plan.retire if loads[i].engine.state is EngineState.READY]
        return retire

    def _p2p_engine(self, load: EngineLoad) -> P2pEngine:
        engine = load.engine
        port = port_label(engine.labels, LABEL_PORT) or 0
        return P2pEngine(
            id=engine.id,
            p2p_port=port_label(engine.labels, LABEL_P2P_PORT),
            own_p2p_port=self._settings.p2p_port(port),
            idle=engine.state is EngineState.READY and not load.streams,
            created_at=engine.created_at,
        )

    def avoid(self, name: str) -> set[int]:
        """Ports of the VPN's share a new engine behind it must not take."""
        share = self._shares[name]
        own = {port: self._settings.p2p_port(port) for port in share.ports()}
        return ports_to_avoid(share, self.forwarded(name), own)

    def p2p(self, name: str, port: int) -> int:
        """The P2P port of a new engine on ``port`` behind the VPN: its forwarded port when the
        next engine is to get it and no start is taking it, else the engine's own."""
        forwarded = self.forwarded(name)
        if forwarded is not None and name in self.give_forwarded and name not in self.forwarding_to:
            self.forwarding_to[name] = forwarded
            self.give_forwarded.discard(name)
            return forwarded
        return self._settings.p2p_port(port)

    def started(self, namespace: Namespace | None) -> None:
        """A start placed with ``namespace`` is over (the engine is in the pool, or failed)."""
        if namespace is not None:
            name = namespace.labels.get(LABEL_VPN, "")
            if self.forwarding_to.get(name) == namespace.p2p_port:
                del self.forwarding_to[name]
