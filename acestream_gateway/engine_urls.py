"""Engines the gateway uses but does not run: the ``ENGINE_URLS`` list, parsed and checked.

People run engines themselves (one on a NAS, several started by another tool) and benchmarks run
emulators as plain processes; ``ENGINE_URLS`` names them. Each URL must say exactly where an
engine's HTTP API answers, and nothing else, so that a typo stops the gateway at start instead of
leaving it with an engine it can never reach. Each engine's name comes from its URL alone, so it
is the same across restarts and in every log line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# Host names and IP literals (IPv6 with an optional zone): anything else is a typo.
_HOST = re.compile(r"^[a-z0-9._%:-]+$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class EngineUrl:
    """Where one engine of ``ENGINE_URLS`` answers: a host and a port, nothing more."""

    host: str
    port: int

    @property
    def name(self) -> str:
        """The engine's name and pool id; distinct URLs never share one (the port has no ``-``)."""
        return f"static-{self.host}-{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> EngineUrl:
        """One URL ``http://host:port`` (a trailing ``/`` is allowed); ValueError otherwise."""
        entry = text.strip()
        try:
            parts = urlsplit(entry)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a URL ({exc})") from None
        if parts.scheme != "http":
            raise ValueError(f"{entry!r} must start with http://")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{entry!r} must not carry a user or password")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{entry!r} must have no path, query or fragment beyond '/'")
        host = _normal_host(parts.hostname or "")
        if not host or _HOST.match(host) is None:
            raise ValueError(f"{entry!r} must name a host")
        if port is None or port == 0:
            raise ValueError(f"{entry!r} must give a port from 1 to 65535 (http://host:port)")
        return cls(host, port)


def parse_engine_urls(text: str) -> tuple[EngineUrl, ...]:
    """Comma-separated URLs, each at most once; an empty text is an empty list."""
    if not text.strip():
        return ()
    urls: list[EngineUrl] = []
    for number, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            raise ValueError(f"entry {number} is empty (URLs are separated by single commas)")
        url = EngineUrl.parse(entry)
        if url in urls:
            raise ValueError(f"lists {url} twice")
        urls.append(url)
    return tuple(urls)


def _normal_host(host: str) -> str:
    """IP literals in their canonical form, so two spellings of one address are one engine."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()
