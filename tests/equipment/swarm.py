"""A single-node Docker Swarm on a daemon the tests own (tests/equipment/second_daemon.py), never
on the machine's daemon.

The manager advertises its namespace's address: the node's address (``Status.Addr``) is then the
one its engines are reached at from the machine (a loopback address is accepted too, but names
the namespace's own loopback, which the machine cannot reach). Engines run as one-replica services
whose HTTP port is published in host mode (``--publish mode=host,target=P,published=P``): the
port opens on the node the task lands on, with no routing mesh in between. A task is what Swarm
restarts or reschedules; :meth:`Swarm.running_task` reads it the way an orchestrator would: the
task's container, its node's address and its published ports from the task's status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.equipment.second_daemon import DockerDaemon

MANAGER_PORT = 2377


@dataclass(frozen=True)
class Task:
    """A running task of a service: where its engine is reached."""

    id: str
    container_id: str
    node_address: str
    ports: frozenset[int]


class Swarm:
    """The swarm of one manager node on ``daemon``."""

    def __init__(self, daemon: DockerDaemon) -> None:
        self.daemon = daemon

    @property
    def docker_host(self) -> str:
        """The manager's ``DOCKER_HOST`` (its unix socket)."""
        return self.daemon.unix_url

    @property
    def node_address(self) -> str:
        """The node's address: where host-mode published ports are reached."""
        return self.daemon.engine_host

    def init(self) -> None:
        address = self.daemon.engine_host
        self.daemon.docker(
            "swarm", "init", f"--advertise-addr={address}",
            f"--listen-addr={address}:{MANAGER_PORT}",
        )  # fmt: skip

    def label_node(self, key: str, value: str) -> None:
        """Labels the node, for placement constraints such as ``node.labels.<key>==<value>``."""
        node = self.daemon.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
        self.daemon.docker("node", "update", "--label-add", f"{key}={value}", node)

    def running_task(self, service: str) -> Task | None:
        """The service's task that runs now, if any."""
        ids = self.daemon.docker(
            "service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", service
        ).stdout.split()
        for task in self._inspect(ids):
            status = task.get("Status", {})
            container = status.get("ContainerStatus", {}).get("ContainerID", "")
            if status.get("State") == "running" and container:
                ports = status.get("PortStatus", {}).get("Ports") or []
                return Task(
                    id=task["ID"],
                    container_id=container,
                    node_address=self._node_address(task["NodeID"]),
                    ports=frozenset(int(p["PublishedPort"]) for p in ports),
                )
        return None

    def _node_address(self, node: str) -> str:
        return self.daemon.docker("node", "inspect", "-f", "{{.Status.Addr}}", node).stdout.strip()

    def _inspect(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        result = self.daemon.docker("inspect", "--type", "task", *ids, check=False)
        data: list[dict[str, Any]] = json.loads(result.stdout or "[]")
        return data
