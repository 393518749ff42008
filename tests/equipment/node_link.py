"""A direct link between two test network namespaces (tests/equipment/netns.py): two hosts on one
wire, so that they reach each other without the machine forwarding a packet.

Each namespace is joined to the machine by its own veth pair; the machine routes to both, but
forwarding between them would take the machine's forwarding and firewall (Docker's ``FORWARD``
policy is to drop). Instead a second veth pair joins the two namespaces directly, over a /30 of its
own (the second /30 of the first namespace's block, which the machine never routes to: it holds an
``unreachable`` route for the whole block). Inside each namespace a /32 route sends the other's
address (its machine-facing address: where its daemon listens and its engines are published) over
that wire, with the namespace's own machine-facing address as the source. So each host sees the
other at the address the machine sees it at, and a Swarm manager sees its worker connect from the
worker's address, which it then gives as the node's address (``Status.Addr``).
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Network

from tests.equipment.netns import NETNS_DIR, Namespace


def wire_subnet(namespace: Namespace) -> IPv4Network:
    """The /30 of the direct wire: the one after ``namespace``'s link to the machine."""
    link = namespace.subnets.link
    return IPv4Network(f"{link.broadcast_address + 1}/{link.prefixlen}")


class NodeLink:
    """A veth pair between namespaces ``a`` and ``b`` with a /32 route to each other's address."""

    def __init__(self, a: Namespace, b: Namespace) -> None:
        self.a, self.b = a, b
        self.subnet = wire_subnet(a)
        self.a_if, self.b_if = f"{a.name}-w", f"{b.name}-w"

    @property
    def a_end(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def b_end(self) -> str:
        return str(self.subnet.network_address + 2)

    def create(self) -> None:
        prefix = self.subnet.prefixlen
        _ip("-n", self.a.name, "link", "add", self.a_if, "type", "veth", "peer", "name",
            self.b_if, "netns", self.b.name)  # fmt: skip
        _ip("-n", self.a.name, "addr", "add", f"{self.a_end}/{prefix}", "dev", self.a_if)
        _ip("-n", self.b.name, "addr", "add", f"{self.b_end}/{prefix}", "dev", self.b_if)
        _ip("-n", self.a.name, "link", "set", self.a_if, "up")
        _ip("-n", self.b.name, "link", "set", self.b_if, "up")
        _ip("-n", self.a.name, "route", "add", f"{self.b.address}/32", "via", self.b_end,
            "dev", self.a_if, "src", self.a.address)  # fmt: skip
        _ip("-n", self.b.name, "route", "add", f"{self.a.address}/32", "via", self.a_end,
            "dev", self.b_if, "src", self.b.address)  # fmt: skip

    def delete(self) -> None:
        """Removes the pair (both ends and the routes over it go with either end)."""
        for namespace, name in ((self.a, self.a_if), (self.b, self.b_if)):
            if _link_in(namespace, name):
                subprocess.run(["ip", "-n", namespace.name, "link", "delete", name],
                               capture_output=True, timeout=30, check=False)  # fmt: skip

    def route(self, source: Namespace, destination: str) -> str:
        """How ``source`` reaches ``destination`` (``ip route get``), for the tests to assert."""
        result = subprocess.run(
            ["ip", "-n", source.name, "-j", "route", "get", destination],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        found = json.loads(result.stdout or "[{}]")[0]
        return f"dev {found.get('dev', '')} src {found.get('prefsrc', '')}"

    def leftovers(self) -> list[str]:
        return [
            f"interface {name} in {namespace.name}"
            for namespace, name in ((self.a, self.a_if), (self.b, self.b_if))
            if _link_in(namespace, name)
        ]


def _link_in(namespace: Namespace, name: str) -> bool:
    if not (NETNS_DIR / namespace.name).exists():
        return False
    result = subprocess.run(
        ["ip", "-n", namespace.name, "link", "show", name], capture_output=True, check=False
    )
    return result.returncode == 0


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
