"""The Docker endpoints engines run on: the ``DOCKER_ENDPOINTS`` list, parsed and checked.

Each endpoint is one Docker daemon (``unix:///…`` on this machine, ``tcp://host:port`` on another)
with its own host port range, its own share of the engines (``max_engines``), the address its
engines are reached at, optionally its own Docker network and VPN containers. A TCP endpoint
speaks TLS with verification always on (the CA that signed the daemon's certificate, and the
gateway's client certificate and key); one without TLS must say so (``"tls": false``), so an
endpoint is never left open by an omission. A mistake stops the gateway at start with one line
naming the endpoint. See ``docs/TOPOLOGY.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PortsParser = Callable[[str], tuple[int, int]]
"""How ``"lo-hi"`` is read (``settings.PortRange.parse``)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEYS = {
    "name",
    "url",
    "tls",
    "engine_host",
    "ports",
    "max_engines",
    "network",
    "gluetun_container_name",
}
_TLS_KEYS = ("ca", "cert", "key")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The files of a TLS endpoint: the CA that signed the daemon's certificate, and the
    gateway's client certificate and its key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class DockerEndpoint:
    """One Docker daemon engines run on; ``named``: from DOCKER_ENDPOINTS (its engines carry the
    endpoint's name in a label and in their container names), else the one default endpoint."""

    name: str
    url: str | None  # None: DOCKER_HOST, else the local daemon's socket
    tls: TlsFiles | None
    engine_host: str
    ports: tuple[int, int]  # inclusive
    max_engines: int
    network: str | None = None
    gluetun_container_name: tuple[str, ...] = ()
    named: bool = True


def parse_docker_endpoints(text: str, parse_ports: PortsParser) -> tuple[DockerEndpoint, ...]:
    """``DOCKER_ENDPOINTS`` as endpoints (empty when unset); ValueError with one line naming the
    endpoint otherwise."""
    if not text.strip():
        return ()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON list of endpoint objects ({exc})") from None
    if not isinstance(items, list) or not items:
        raise ValueError("must be a non-empty JSON list of endpoint objects")
    endpoints = tuple(_endpoint(item, n, parse_ports) for n, item in enumerate(items))
    names = [e.name for e in endpoints]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"endpoint names must differ: {', '.join(twice)} appears twice")
    return endpoints


def _endpoint(item: object, index: int, parse_ports: PortsParser) -> DockerEndpoint:
    if not isinstance(item, dict):
        raise ValueError(f"endpoint {index} must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"endpoint {index}: 'name' must be letters, digits, '_', '.' or '-'")
    try:
        return _checked(name, item, parse_ports)
    except ValueError as exc:
        raise ValueError(f"endpoint {name!r}: {exc}") from None


def _checked(name: str, item: dict[str, Any], parse_ports: PortsParser) -> DockerEndpoint:
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ValueError(f"unknown keys {unknown}")
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("unix:///", "tcp://")):
        raise ValueError("'url' must be unix:///path or tcp://host:port")
    tls = _tls(url, item.get("tls"), "tls" in item)
    engine_host = item.get("engine_host", "127.0.0.1" if url.startswith("unix:") else None)
    if not isinstance(engine_host, str) or not engine_host:
        raise ValueError("'engine_host' (the address its engines are reached at) is required")
    ports_text = item.get("ports")
    if not isinstance(ports_text, str):
        raise ValueError("'ports' must be 'lo-hi'")
    ports = parse_ports(ports_text)
    size = ports[1] - ports[0] + 1
    max_engines = item.get("max_engines", size)
    if not isinstance(max_engines, int) or isinstance(max_engines, bool) or max_engines < 1:
        raise ValueError("'max_engines' must be a whole number >= 1")
    if max_engines > size:
        raise ValueError(f"'max_engines' ({max_engines}) exceeds its {size} ports ({ports_text})")
    network = item.get("network")
    if network is not None and (not isinstance(network, str) or not network):
        raise ValueError("'network' must be a Docker network's name")
    vpns = item.get("gluetun_container_name", [])
    if isinstance(vpns, str):
        vpns = [v.strip() for v in vpns.split(",") if v.strip()]
    if not isinstance(vpns, list) or not all(isinstance(v, str) and v for v in vpns):
        raise ValueError("'gluetun_container_name' must be a list of container names")
    return DockerEndpoint(
        name=name,
        url=url,
        tls=tls,
        engine_host=engine_host,
        ports=(ports[0], ports[1]),
        max_engines=max_engines,
        network=network,
        gluetun_container_name=tuple(vpns),
    )


def _tls(url: str, value: object, given: bool) -> TlsFiles | None:
    """TLS for a TCP endpoint: required, and ``false`` only when written out."""
    if url.startswith("unix:"):
        if given and value not in (False, None):
            raise ValueError("'tls' applies to tcp:// endpoints only")
        return None
    if value is False:
        return None
    if not given or value is None:
        raise ValueError(
            'a tcp:// endpoint needs \'tls\' ({"ca", "cert", "key"}), or "tls": false '
            "written out to speak to it without TLS"
        )
    if not isinstance(value, dict) or set(value) != set(_TLS_KEYS):
        raise ValueError('\'tls\' must be {"ca": path, "cert": path, "key": path} or false')
    files = {key: Path(str(value[key])) for key in _TLS_KEYS}
    for key, path in files.items():
        if not path.is_file():
            raise ValueError(f"tls {key} file {str(path)!r} does not exist or is not a file")
    return TlsFiles(**files)
