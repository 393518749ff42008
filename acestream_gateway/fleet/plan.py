"""The fleet plan: how many engines to start and which to remove, from a pool snapshot alone.

Pure, so the rules are tested exhaustively: ``MIN_REPLICAS`` counts engines with no stream
(rule 3), the fleet never grows past ``MAX_ACTIVE_REPLICAS`` (rule 6), and an engine is only
removed when it carries nothing and the spare count stays at ``MIN_REPLICAS`` without it.

Demand, not just spares: the fleet wants ``MIN_REPLICAS`` empty engines plus one for every claim
waiting for an engine (new channels and failovers), and the provisioner starts them several at
once. Engines still starting count toward that (they are on their way), but not when deciding
whether a ready spare may go: a starting engine may never become ready. No spare is reaped while
claims wait.

An unhealthy engine is replaced at once (it is no spare), and removed once its channels moved off,
or when its wait for that is over. A draining engine goes as soon as it carries nothing. Leaving
engines make room: when the fleet is at its maximum and the demand needs places, a leaving
(unhealthy or draining) engine whose channels were told to move is removed to free its place, in
the same plan as the start that takes it. The reconciler removes before it starts, so the count of
containers never passes the maximum, not even for a moment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..engines.model import EngineState
from ..engines.pool import EngineLoad

_SPARE_STATES = (EngineState.READY, EngineState.STARTING)
_GOING_STATES = (EngineState.UNHEALTHY, EngineState.DRAINING)


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """What to do now: start ``start`` engines; remove the engines in ``remove`` (by id)."""

    start: int
    remove: tuple[str, ...]


def plan_fleet(
    loads: Sequence[EngineLoad],
    *,
    min_replicas: int,
    max_replicas: int,
    grace_s: float,
    now: float,
    unhealthy_since: Mapping[str, float] | None = None,
    unhealthy_wait_s: float = math.inf,
    waiting: int = 0,
) -> FleetPlan:
    """Replace broken engines, start engines for the demand, make room, reap idle surplus.

    ``waiting`` counts the claims waiting for an engine. ``unhealthy_since`` says when each
    unhealthy engine was found so; one that still carries channels ``unhealthy_wait_s`` later is
    removed anyway.
    """
    since = unhealthy_since or {}
    broken = [x.engine.id for x in loads if _must_go(x, since, now, unhealthy_wait_s)]
    spares = [x for x in loads if x.engine.state in _SPARE_STATES and not x.streams]
    ready_spares = [x for x in spares if x.engine.state is EngineState.READY]
    kept = len(loads) - len(broken)
    reapable = sorted(
        (x for x in ready_spares if x.idle_since is not None),
        key=lambda x: (x.idle_since, x.engine.name),
    )
    over_max = max(0, kept - max_replicas)
    surplus = 0 if waiting else len(ready_spares) - min_replicas
    reap = [
        x.engine.id
        for i, x in enumerate(reapable)
        if i < over_max or (i < surplus and now - (x.idle_since or now) >= grace_s)
    ]
    wanted = min_replicas + waiting - len(spares) + len(reap)
    room = max_replicas - kept + len(reap)
    make_room = _making_room(loads, broken, max(0, min(wanted, waiting) - max(0, room)))
    start = max(0, min(wanted, room + len(make_room)))
    return FleetPlan(start=start, remove=(*broken, *make_room, *reap))


def _making_room(loads: Sequence[EngineLoad], broken: Sequence[str], places: int) -> list[str]:
    """Up to ``places`` leaving engines whose channels wait to move, to remove for their places:
    unhealthy ones first, then the most moving channels."""
    leaving = sorted(
        (
            x
            for x in loads
            if x.engine.state in _GOING_STATES and x.moving and x.engine.id not in broken
        ),
        key=lambda x: (x.engine.state is not EngineState.UNHEALTHY, -x.moving, x.engine.name),
    )
    return [x.engine.id for x in leaving[:places]]


def _must_go(load: EngineLoad, since: Mapping[str, float], now: float, wait_s: float) -> bool:
    if load.engine.state not in _GOING_STATES:
        return False
    if not load.streams:
        return True
    found = since.get(load.engine.id)
    unhealthy = load.engine.state is EngineState.UNHEALTHY
    return unhealthy and found is not None and now - found >= wait_s
