"""A Docker Swarm of two nodes on this machine: a manager and a worker, each a test-owned daemon in
a network namespace of its own (tests/equipment/second_daemon.py), never the machine's daemon.

The two namespaces are joined by a direct wire (tests/equipment/node_link.py), so the nodes reach
each other at their machine-facing addresses (Swarm's 2377/tcp and 7946/tcp+udp) without the
machine forwarding anything. Each node advertises that address: it is the node's address
(``Status.Addr``) and where the machine reaches the engines published there in host mode. Engines
of a one-replica service land on whichever node meets the service's constraints; labels
(:meth:`SwarmNodes.label`) steer them, :meth:`SwarmNodes.drain` makes Swarm move a node's tasks to
the other, and stopping the worker's daemon (``worker.stop()``) loses a host: the manager marks the
node down after its heartbeats stop (about 15 s) and reschedules its tasks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from tests.equipment.node_link import NodeLink
from tests.equipment.second_daemon import DockerDaemon, docker_daemon
from tests.equipment.swarm import MANAGER_PORT, Swarm


@dataclass(frozen=True)
class NodeView:
    """A node as the manager sees it (``docker node inspect``)."""

    id: str
    address: str
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    labels: dict[str, str]


class SwarmNodes(Swarm):
    """A swarm of two nodes: the manager (``daemon``) and ``worker``; :class:`Swarm`'s methods
    (``docker_host``, ``running_task``) speak to the manager."""

    def __init__(self, manager: DockerDaemon, worker: DockerDaemon, link: NodeLink) -> None:
        super().__init__(manager)
        self.worker = worker
        self.link = link
        self.manager_id = ""
        self.worker_id = ""

    @property
    def manager_address(self) -> str:
        return self.daemon.engine_host

    @property
    def worker_address(self) -> str:
        return self.worker.engine_host

    def join(self, timeout_s: float = 60) -> None:
        """The worker joins the manager's swarm over the direct wire, advertising its address."""
        token = self.daemon.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        address = self.worker_address
        self.worker.docker(
            "swarm", "join", "--token", token, f"--advertise-addr={address}",
            f"--listen-addr={address}:{MANAGER_PORT}", f"{self.manager_address}:{MANAGER_PORT}",
        )  # fmt: skip
        self.manager_id = _node_id(self.daemon)
        self.worker_id = _node_id(self.worker)
        self.wait_node(self.worker_id, "ready", timeout_s)

    def node(self, node_id: str) -> NodeView:
        info = json.loads(self.daemon.docker("node", "inspect", node_id).stdout)[0]
        status, spec = info.get("Status", {}), info.get("Spec", {})
        return NodeView(
            id=node_id,
            address=status.get("Addr", ""),
            state=status.get("State", ""),
            availability=spec.get("Availability", ""),
            labels=dict(spec.get("Labels") or {}),
        )

    def wait_node(self, node_id: str, state: str, timeout_s: float) -> NodeView:
        """The node once the manager sees it in ``state`` (``ready``, ``down``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.node(node_id)
            if view.state == state:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node_id} is {view.state}, not {state}")
            time.sleep(0.5)

    def label(self, node_id: str, key: str, value: str = "true") -> None:
        self.daemon.docker("node", "update", "--label-add", f"{key}={value}", node_id)

    def unlabel(self, node_id: str, key: str) -> None:
        self.daemon.docker("node", "update", "--label-rm", key, node_id, check=False)

    def drain(self, node_id: str) -> None:
        """Swarm stops the node's tasks and starts them again on other nodes that qualify."""
        self.daemon.docker("node", "update", "--availability", "drain", node_id)

    def activate(self, node_id: str) -> None:
        self.daemon.docker("node", "update", "--availability", "active", node_id)

    def address_of(self, node_id: str) -> str:
        return self.manager_address if node_id == self.manager_id else self.worker_address

    def task_nodes(self, service: str) -> list[tuple[str, str, str]]:
        """Each task of ``service`` (``docker service ps``): node id, desired and current state."""
        listed = self.daemon.docker(
            "service", "ps", "--no-trunc", "--format",
            "{{.ID}} {{.DesiredState}} {{.CurrentState}}", service,
        ).stdout.split("\n")  # fmt: skip
        ids = [line.split()[0] for line in listed if line.strip()]
        if not ids:
            return []
        tasks = json.loads(self.daemon.docker("inspect", "--type", "task", *ids).stdout)
        return [
            (t.get("NodeID", ""), t.get("DesiredState", ""), t.get("Status", {}).get("State", ""))
            for t in tasks
        ]

    def restore(self, timeout_s: float = 90) -> None:
        """Both nodes up, ready and active again (after a test drained or stopped one)."""
        if not self.worker.running:
            self.worker.start()
        for node_id in (self.manager_id, self.worker_id):
            self.activate(node_id)
            self.wait_node(node_id, "ready", timeout_s)


def _node_id(daemon: DockerDaemon) -> str:
    return daemon.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()


def _leave(worker: DockerDaemon) -> None:
    """The worker leaves while the wire still stands (the manager then forgets nothing late)."""
    if worker.running:
        worker.docker("swarm", "leave", "--force", check=False, timeout=30)


@contextmanager
def swarm_nodes(images: Sequence[str] = ()) -> Iterator[SwarmNodes]:
    """A two-node swarm with ``images`` loaded into both daemons; everything removed at the end
    (the worker leaves, then each daemon goes with its namespace and the wire between them)."""
    with ExitStack() as stack:
        manager = stack.enter_context(docker_daemon(images))
        worker = stack.enter_context(docker_daemon(images))
        link = NodeLink(manager.namespace, worker.namespace)
        stack.callback(link.delete)
        link.create()
        nodes = SwarmNodes(manager, worker, link)
        stack.callback(_leave, worker)
        nodes.init()
        nodes.join()
        yield nodes
