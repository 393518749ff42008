"""A network namespace the tests make, joined to the machine by a veth pair: a host of its own.

A Docker daemon started inside it has its own interfaces, bridge, routes and netfilter tables, so
it never meets the machine's daemon (its ``docker0``, its iptables chains) and everything it makes
there goes away with the namespace. The machine reaches the namespace over a point-to-point /30:
the namespace's end (``address``) is where its daemon listens and its engines are published.

Traffic from the tests goes to that address only, never beyond the machine: while the namespace
exists, the machine holds an ``unreachable`` route for its whole block, so that when the link is
down (its connected route gone) a packet for the namespace fails at once instead of following the
default route out of the machine.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")
# Private space far from Docker's default pools (172.17-31/16, 192.168/16 and 10.0.0.0/24 onwards
# for overlay networks); each namespace takes a /23 of it: the link, then its daemon's bridge.
_SPACE = IPv4Network("10.200.0.0/13")


@dataclass(frozen=True)
class Subnets:
    """The link between the machine and a namespace (a /30) and its daemon's bridge (a /24)."""

    link: IPv4Network
    bridge: IPv4Network

    @property
    def host_address(self) -> str:
        return str(self.link.network_address + 1)

    @property
    def address(self) -> str:
        return str(self.link.network_address + 2)

    @property
    def block(self) -> IPv4Network:
        """The /23 that holds both."""
        return self.link.supernet(new_prefix=23)

    @property
    def bridge_gateway(self) -> str:
        """The bridge's own address with its prefix, as ``dockerd --bip`` takes it."""
        return f"{self.bridge.network_address + 1}/{self.bridge.prefixlen}"


def pick_subnets(taken: Iterable[IPv4Network], rng: random.Random) -> Subnets:
    """A /23 of the private space that overlaps nothing in ``taken``, split into link and
    bridge."""
    used = list(taken)
    blocks = list(_SPACE.subnets(new_prefix=23))
    for block in rng.sample(blocks, len(blocks)):
        if not any(block.overlaps(net) for net in used):
            low, high = block.subnets(new_prefix=24)
            return Subnets(link=next(low.subnets(new_prefix=30)), bridge=high)
    raise RuntimeError("no free /23 for a test network namespace")


def machine_networks() -> list[IPv4Network]:
    """Every IPv4 network the machine has an address or a route in."""
    nets: list[IPv4Network] = []
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            nets.append(IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            try:
                nets.append(IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
            except ValueError:
                continue
    return nets


class Namespace:
    """A named network namespace with a veth link to the machine; ``name`` is at most 11
    characters (interface names add 4)."""

    def __init__(self, name: str, subnets: Subnets) -> None:
        self.name = name
        self.subnets = subnets
        self.host_if = host_interface(name)
        self.ns_if = f"{name}-n"

    @property
    def address(self) -> str:
        """The namespace's own address, reachable from the machine."""
        return self.subnets.address

    @property
    def enter(self) -> list[str]:
        """A command prefix that runs a program inside the namespace (network only)."""
        return ["nsenter", f"--net={NETNS_DIR / self.name}"]

    def create(self) -> None:
        link = self.subnets.link.prefixlen
        _ip("route", "add", "unreachable", str(self.subnets.block))
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
            "netns", self.name)  # fmt: skip
        _ip("addr", "add", f"{self.subnets.host_address}/{link}", "dev", self.host_if)
        _ip("-n", self.name, "addr", "add", f"{self.address}/{link}", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        self.reconnect()

    def disconnect(self, silent: bool = True) -> None:
        """The namespace drops off the network. ``silent``: its end of the link goes down, and
        packets to it vanish (connections time out, as to a machine that lost power); else the
        machine's end goes down, and connections fail at once (no route to host)."""
        if silent:
            _ip("-n", self.name, "link", "set", self.ns_if, "down")
        else:
            _ip("link", "set", self.host_if, "down")

    def reconnect(self) -> None:
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        _ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        delete_namespace(self.name, self.subnets.block)

    def leftovers(self) -> list[str]:
        left = []
        if (NETNS_DIR / self.name).exists():
            left.append(f"network namespace {self.name}")
        if _link_exists(self.host_if):
            left.append(f"interface {self.host_if}")
        if _unreachable_route(self.subnets.block):
            left.append(f"route unreachable {self.subnets.block}")
        return left


def host_interface(name: str) -> str:
    """The machine's end of the veth link of namespace ``name``."""
    return f"{name}-h"


def delete_namespace(name: str, block: IPv4Network | None, timeout_s: float = 20) -> None:
    """Removes namespace ``name`` with all it holds, and the route of its ``block``. The kernel
    tears a namespace down in the background: its end of the veth takes the machine's end with it
    a moment later."""
    if (NETNS_DIR / name).exists():
        _ip("netns", "delete", name)
    deadline = time.monotonic() + timeout_s
    while _link_exists(host_interface(name)):
        if time.monotonic() > deadline:
            subprocess.run(["ip", "link", "delete", host_interface(name)], capture_output=True)
            break
        time.sleep(0.1)
    if block is not None and _unreachable_route(block):
        _ip("route", "delete", "unreachable", str(block))


def _unreachable_route(block: IPv4Network) -> bool:
    return bool(_ip_json("route", "show", "type", "unreachable", "exact", str(block)))


def _link_exists(name: str) -> bool:
    result = subprocess.run(["ip", "link", "show", name], capture_output=True, check=False)
    return result.returncode == 0


def _ip_json(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["ip", "-j", *args], capture_output=True, text=True, timeout=30, check=True
    )
    data = json.loads(result.stdout or "[]")
    return [item for item in data if isinstance(item, dict)]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
