"""Gluetun's HTTP control server, as the fleet asks it: is the tunnel up, which port is forwarded.

Gluetun's routes moved over its releases (docs/GLUETUN.md): newer ones answer ``/v1/vpn/status``
and ``/v1/portforward``, older ones only ``/v1/openvpn/status`` and ``/v1/openvpn/portforwarded``
(an unknown route gets ``400`` or ``404``), so the newer route is asked first and the older one on
such an answer. A control server that does not answer, or refuses us (``401``: its routes are
private since v3.40 unless a role allows them), says nothing: the VPN's health then rests on
Docker's facts alone. Every call has a short timeout of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .vpn import Tunnel

STATUS_ROUTES = ("/v1/vpn/status", "/v1/openvpn/status")
FORWARDED_ROUTES = ("/v1/portforward", "/v1/openvpn/portforwarded")
_ROUTE_UNKNOWN = (400, 404)


class GluetunClient:
    """Asks Gluetun control servers over one shared ``aiohttp`` session."""

    def __init__(
        self, http: aiohttp.ClientSession, *, timeout_s: float, api_key: str | None = None
    ) -> None:
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"X-API-Key": api_key} if api_key else {}

    async def tunnel(self, base_url: str) -> Tunnel:
        """The tunnel's status and forwarded port; fields are None where no answer came."""
        status, forwarded = await asyncio.gather(
            self._first(base_url, STATUS_ROUTES), self._first(base_url, FORWARDED_ROUTES)
        )
        text = status.get("status") if status else None
        return Tunnel(
            status=text if isinstance(text, str) else None,
            forwarded_port=forwarded_port(forwarded),
        )

    async def _first(self, base_url: str, routes: tuple[str, ...]) -> dict[str, Any] | None:
        for route in routes:
            try:
                async with self._http.get(
                    base_url + route, headers=self._headers, timeout=self._timeout
                ) as resp:
                    if resp.status in _ROUTE_UNKNOWN:
                        continue
                    if resp.status != 200:
                        return None
                    body = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None
            return body if isinstance(body, dict) else None
        return None


def forwarded_port(body: dict[str, Any] | None) -> int | None:
    """The forwarded port of a ``{"port": N}`` (or ``{"port": N, "ports": [...]}``) answer;
    None when none is forwarded (Gluetun answers 0)."""
    if body is None:
        return None
    port = body.get("port")
    if not port:
        ports = body.get("ports")
        port = ports[0] if isinstance(ports, list) and ports else None
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port
    return None
