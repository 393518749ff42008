"""A Swarm's nodes and its service and node events, as the gateway reads them (pure).

A node is where engines' tasks run and where their host-mode ports answer. The gateway keeps an
engine only while its node is ``ready`` and not drained: a drained node's tasks are being shut
down, and a node that is down, unknown or disconnected cannot be trusted to answer. Swarm notices
a lost node only after its heartbeat times out and reschedules its tasks after that, listing them
as running meanwhile; the node's state is the first sign. A paused node keeps its tasks running
(it only takes no new ones), so its engines stay.

Docker emits no task events. Services and nodes report ``create``, ``update`` and ``remove`` on a
manager (scope ``swarm``): a node going down or drained, or one of the gateway's services updated
or removed, asks for a pass at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engines.model import Engine

# Docker's event filters for the Swarm's service and node events (a manager sends them).
SWARM_EVENTS: dict[str, list[str]] = {"type": ["service", "node"], "scope": ["swarm"]}

_UNUSABLE_ADDRESSES = ("", "0.0.0.0")


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A Swarm node as the manager lists it (``GET /nodes``)."""

    id: str
    hostname: str
    address: str  # Status.Addr: where its host-mode published ports answer
    role: str  # manager, worker
    availability: str  # active, pause, drain
    state: str  # ready, down, unknown, disconnected
    labels: dict[str, str]

    @property
    def reachable(self) -> bool:
        """Ready and active: it answers and takes new engines."""
        return self.state == "ready" and self.availability == "active"

    @property
    def keeps_engines(self) -> bool:
        """Its running tasks are engines: it is ready and not drained (see the module
        docstring)."""
        return self.state == "ready" and self.availability != "drain"

    @property
    def condition(self) -> str:
        """Why its engines left, or ``ready``: ``drained``, ``down``, ``unknown`` ..."""
        if self.state != "ready":
            return self.state or "unknown"
        return "drained" if self.availability == "drain" else "ready"


def node_record(info: Mapping[str, Any]) -> NodeRecord:
    spec = _mapping(info.get("Spec"))
    status = _mapping(info.get("Status"))
    description = _mapping(info.get("Description"))
    return NodeRecord(
        id=str(info.get("ID", "")),
        hostname=str(description.get("Hostname", "")),
        address=node_address(status, _mapping(info.get("ManagerStatus"))),
        role=str(spec.get("Role", "")),
        availability=str(spec.get("Availability", "")),
        state=str(status.get("State", "")),
        labels={str(k): str(v) for k, v in _mapping(spec.get("Labels")).items()},
    )


def node_address(status: Mapping[str, Any], manager: Mapping[str, Any]) -> str:
    """Where a node's host-mode ports answer: ``Status.Addr``. Some managers report
    ``0.0.0.0`` there (moby/moby#35437, a manager initialised without an advertise address
    seen by the others); a manager's ``ManagerStatus.Addr`` (``host:2377``, the address the
    other managers reach it at) is the same host, so its host part stands in."""
    addr = str(status.get("Addr", ""))
    if addr not in _UNUSABLE_ADDRESSES:
        return addr
    host, sep, _port = str(manager.get("Addr", "")).rpartition(":")
    host = host.strip("[]")
    return host if sep and host not in _UNUSABLE_ADDRESSES else addr


def engine_addresses(nodes: Iterable[NodeRecord]) -> dict[str, str]:
    """Each node whose running tasks are engines → its address; nodes without a usable address,
    drained or not ready are left out."""
    return {
        n.id: n.address for n in nodes if n.keeps_engines and n.address not in _UNUSABLE_ADDRESSES
    }


def leaving_reason(node_id: str | None, nodes: Mapping[str, NodeRecord]) -> str:
    """Why the engine of a task on ``node_id`` left the pool."""
    node = nodes.get(node_id or "")
    if node is None or node.keeps_engines:
        return "its task stopped or Swarm rescheduled it"
    return f"its node {node.hostname or node.id} is {node.condition}"


@dataclass(frozen=True, slots=True)
class NodeEngine:
    """An engine on a node, for the status."""

    id: str
    name: str
    port: int
    state: str


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One Swarm node for the status: where it is, whether it takes engines, and its engines."""

    id: str
    hostname: str
    address: str | None
    role: str
    availability: str
    state: str
    reachable: bool
    condition: str  # ready, drained, down, unknown, disconnected (see NodeRecord.condition)
    engines: tuple[NodeEngine, ...]


def node_status(nodes: Iterable[NodeRecord], engines: Sequence[Engine]) -> tuple[NodeStatus, ...]:
    """Every node, by hostname, with the pool's engines whose task runs on it, by port."""
    return tuple(
        NodeStatus(
            id=n.id,
            hostname=n.hostname,
            address=None if n.address in _UNUSABLE_ADDRESSES else n.address,
            role=n.role,
            availability=n.availability,
            state=n.state,
            reachable=n.reachable,
            condition=n.condition,
            engines=tuple(
                NodeEngine(e.id, e.name, e.address.port, e.state.value)
                for e in sorted(engines, key=lambda e: e.address.port)
                if e.node == n.id
            ),
        )
        for n in sorted(nodes, key=lambda n: (n.hostname, n.id))
    )


@dataclass(frozen=True, slots=True)
class SwarmEvent:
    """One service or node event: ``kind`` ``service`` or ``node``, its ``action`` (``create``,
    ``update``, ``remove``) and the service's or node's name."""

    kind: str
    id: str
    action: str
    name: str = ""


def parse_swarm_event(line: bytes) -> SwarmEvent | None:
    """One line of Docker's event stream; None for anything but a service or node event."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("Type") not in ("service", "node"):
        return None
    actor = _mapping(data.get("Actor"))
    action = data.get("Action")
    if not isinstance(action, str):
        return None
    name = str(_mapping(actor.get("Attributes")).get("name", ""))
    return SwarmEvent(str(data["Type"]), str(actor.get("ID", "")), action, name)


def wakes(event: SwarmEvent, service_prefix: str) -> bool:
    """Whether the event asks for a pass: any node's, and those of the gateway's services (their
    names begin with ``service_prefix``)."""
    return event.kind == "node" or event.name.startswith(service_prefix)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
