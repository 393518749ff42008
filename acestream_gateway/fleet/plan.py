"""The fleet plan: how many engines to start and which to remove, from a pool snapshot alone.

Pure, so the rules are tested exhaustively: ``MIN_REPLICAS`` counts engines with no stream
(rule 3), the fleet never grows past ``MAX_ACTIVE_REPLICAS`` (rule 6), and an engine is only
removed when it carries nothing and the spare count stays at ``MIN_REPLICAS`` without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..engines.model import EngineState
from ..engines.pool import EngineLoad

_SPARE_STATES = (EngineState.READY, EngineState.STARTING)


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
) -> FleetPlan:
    """Replace broken idle engines, top spares up to ``min_replicas``, reap idle surplus."""
    broken = [
        x.engine.id for x in loads if x.engine.state is EngineState.UNHEALTHY and not x.streams
    ]
    spares = [x for x in loads if x.engine.state in _SPARE_STATES and not x.streams]
    kept = len(loads) - len(broken)
    reapable = sorted(
        (x for x in spares if x.engine.state is EngineState.READY and x.idle_since is not None),
        key=lambda x: (x.idle_since, x.engine.name),
    )
    over_max = max(0, kept - max_replicas)
    surplus = len(spares) - min_replicas
    reap = [
        x.engine.id
        for i, x in enumerate(reapable)
        if i < over_max or (i < surplus and now - (x.idle_since or now) >= grace_s)
    ]
    start = max(0, min(min_replicas - len(spares), max_replicas - kept))
    return FleetPlan(start=start, remove=(*broken, *reap))
