"""Who may talk to the engine: without --bind-all it serves only localhost and its own subnets.

The own subnets are the directly connected routes of the machine (or container), read from
/proc/net/route where it exists; elsewhere only loopback is trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def local_networks(route_table: Path = Path("/proc/net/route")) -> tuple[Network, ...]:
    try:
        text = route_table.read_text()
    except OSError:
        return LOOPBACK
    return LOOPBACK + tuple(parse_routes(text.splitlines()[1:]))


def parse_routes(lines: Iterable[str]) -> list[Network]:
    """Directly connected IPv4 subnets (no gateway) from /proc/net/route lines."""
    networks: list[Network] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or int(fields[2], 16) != 0 or int(fields[1], 16) == 0:
            continue
        address = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        networks.append(ipaddress.ip_network(f"{address}/{mask}", strict=False))
    return networks


def is_allowed(peer: str | None, networks: Iterable[Network]) -> bool:
    """Whether a client at `peer` (an IP address string) is on loopback or a local subnet."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)
