"""Where engines go in VPN mode, and which engine gets the VPN's forwarded port, as pure decisions.

Engines are spread over the VPNs that can take one (connected, publishing their share, a port of
the share free), fewest engines first, so one VPN going down costs only its share. Each VPN's
forwarded port (Gluetun's port forwarding) is the P2P port of exactly one engine behind it, fixed
when that engine's container is made: the forwarded port can only reach an engine listening on it.
When the port changes, the engine on the old one is replaced (at once when idle, by failover when
not), and so is an idle engine when no engine has the port yet, so its replacement gets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..settings import PortRange


@dataclass(frozen=True, slots=True)
class Share:
    """One VPN's part of the fleet, as placement sees it."""

    name: str
    usable: bool  # connected, and publishing every port of its share
    engines: int  # engines behind it: in the pool, or being started
    free: int  # ports of its share that may be reserved now


def choose_share(shares: Sequence[Share]) -> str | None:
    """The VPN the next engine goes behind: a usable one with a free port, fewest engines first,
    earlier in GLUETUN_CONTAINER_NAME on ties; None when there is none."""
    candidates = [s for s in shares if s.usable and s.free > 0]
    best = min(candidates, key=lambda s: s.engines, default=None)
    return None if best is None else best.name


def usable_forwarded_port(forwarded: int | None, http_ports: PortRange) -> int | None:
    """The forwarded port an engine may take as its P2P port: none that is an engine's HTTP port
    (engines behind one VPN share its ports)."""
    if forwarded is None or forwarded in http_ports:
        return None
    return forwarded


def ports_to_avoid(share: PortRange, forwarded: int | None, own_p2p: dict[int, int]) -> set[int]:
    """HTTP ports of ``share`` a new engine must not take: the one whose own P2P port is the
    forwarded port (another engine may listen on it). ``own_p2p`` maps HTTP to P2P ports."""
    if forwarded is None:
        return set()
    return {port for port in share.ports() if own_p2p.get(port) == forwarded}


@dataclass(frozen=True, slots=True)
class P2pEngine:
    """One engine behind a VPN, as the forwarded-port decision sees it."""

    id: str
    p2p_port: int | None  # what it was told (its label)
    own_p2p_port: int  # the P2P port its HTTP port gets from the range
    idle: bool  # ready and carrying nothing
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    """Who has the forwarded port, who must be replaced, and whether the next engine started
    behind this VPN gets the port."""

    holder: str | None
    retire: tuple[str, ...]
    give_next: bool


def plan_forwarding(
    engines: Iterable[P2pEngine], forwarded: int | None, *, starting_with_it: bool = False
) -> ForwardPlan:
    """Decide for one VPN whose control server reports ``forwarded`` (None: unknown or none).

    Nothing changes while no port is known. Engines on an older forwarded port are replaced; of
    several on the current one (never made so, but adopted from anywhere) the oldest keeps it.
    With nobody on it and none on its way (``starting_with_it``), the next engine gets it, and an
    idle engine is replaced so that there is a next one.
    """
    if forwarded is None:
        return ForwardPlan(None, (), False)
    listed = sorted(engines, key=lambda e: (e.created_at, e.id))
    holders = [e for e in listed if e.p2p_port == forwarded]
    stale = [
        e.id
        for e in listed
        if e.p2p_port is not None and e.p2p_port not in (e.own_p2p_port, forwarded)
    ]
    retire = stale + [e.id for e in holders[1:]]
    if holders:
        return ForwardPlan(holders[0].id, tuple(retire), False)
    if starting_with_it:
        return ForwardPlan(None, tuple(retire), False)
    if not retire:
        idle = [e.id for e in listed if e.idle]
        retire = idle[:1]
    return ForwardPlan(None, tuple(retire), True)
