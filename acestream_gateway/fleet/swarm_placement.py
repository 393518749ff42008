"""Whether any node of a Swarm can take a new engine, as a pure decision.

A new engine's task lands on a node that is ready, active (not paused, not drained) and meets
every placement constraint of ``SWARM_CONSTRAINTS``. While no node can, a service made for an
engine would only wait, and one replaced at its startup timeout would wait again: so the Swarm
backend starts none, its services already made wait for a node rather than time out, and
provisioning is blocked (``no_swarm_node``) with which nodes there are and why none can take it.

Constraints are read the way Swarm reads them: ``<attribute>==<value>`` or ``!=``, on
``node.id``, ``node.hostname``, ``node.role`` and ``node.labels.<key>`` (a node without the label
meets ``!=`` and not ``==``). Attributes the gateway does not read from the node list
(``engine.labels.*``, ``node.platform.*``) are taken as met: Swarm has the last word on those.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .swarm_nodes import NodeRecord

_UNKNOWN = object()  # an attribute the gateway does not read: the constraint is taken as met


def constraint_met(node: NodeRecord, constraint: str) -> bool:
    """Whether ``node`` meets one placement constraint; see the module docstring."""
    for operator in ("==", "!="):
        attribute, found, value = constraint.partition(operator)
        if found:
            break
    else:
        return True  # not a constraint Swarm would take; Swarm refuses it at the service's create
    actual = _attribute(node, attribute.strip())
    if actual is _UNKNOWN:
        return True
    equal = actual == value.strip()
    return equal if operator == "==" else not equal


def _attribute(node: NodeRecord, name: str) -> object:
    if name.startswith("node.labels."):
        return node.labels.get(name.removeprefix("node.labels."))
    match name:
        case "node.id":
            return node.id
        case "node.hostname":
            return node.hostname
        case "node.role":
            return node.role
    return _UNKNOWN


def takers(nodes: Iterable[NodeRecord], constraints: Sequence[str]) -> list[NodeRecord]:
    """The nodes a new engine's task may land on: ready, active, meeting every constraint."""
    return [
        n
        for n in nodes
        if n.reachable and all(constraint_met(n, constraint) for constraint in constraints)
    ]


def no_taker_message(nodes: Sequence[NodeRecord], constraints: Sequence[str]) -> str | None:
    """Why no node can take a new engine (each node and what keeps it out), or None when one
    can."""
    if takers(nodes, constraints):
        return None
    if not nodes:
        return "no Swarm node can take engines: the manager lists no node"
    reasons = []
    for node in sorted(nodes, key=lambda n: (n.hostname, n.id)):
        name = node.hostname or node.id
        if not node.reachable:
            condition = "paused" if node.condition == "ready" else node.condition
            reasons.append(f"{name} is {condition}")
        else:
            unmet = [c for c in constraints if not constraint_met(node, c)]
            reasons.append(f"{name} does not meet {', '.join(unmet)}")
    return f"no Swarm node can take engines: {'; '.join(reasons)}"
