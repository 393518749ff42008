"""A stand-in for a Gluetun VPN container: it holds a network namespace for engines to join and
serves the part of Gluetun's HTTP control server the gateway reads, no more and no less.

Test equipment, built into an image by scripts/vpn-standin-image (deploy/vpn-standin/). Tests
change its answers through Gluetun's own documented routes, as a user could with a real one:
``PUT /v1/vpn/status`` with ``{"status": "stopped"}`` takes the tunnel down (``"running"`` brings it
back), ``PUT /v1/portforward`` with ``{"ports": [N]}`` sets the forwarded port. Gluetun's facts it
keeps (docs/GLUETUN.md): the control server on ``HTTP_CONTROL_SERVER_ADDRESS`` (``:8000``),
statuses ``{"status": "running"}``, ``GET /v1/openvpn/portforwarded`` answering ``{"port": N}``
(0: none), the newer ``GET /v1/portforward`` answering ``{"port": N, "ports": [...]}``
(``"ports": null`` when none; releases before it have only the ``/v1/openvpn/...`` routes,
``STANDIN_LEGACY_ROUTES=1``), no forwarded port while the tunnel is down, ``400`` with
``<METHOD> <path> not found`` for an unknown ``/v1`` route, ``401`` for a route its auth role does
not allow (``HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE``, e.g. ``{"auth": "apikey", "apikey": "k"}``),
and a health server on ``127.0.0.1:9999`` that answers 200 only while the tunnel is up, which
the image's Docker health check asks (``python3 gluetun_standin.py healthcheck``).

Runs on the Debian base image's python3-aiohttp, so it uses nothing newer than aiohttp 3.8.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

STATUSES = ("running", "stopped")
HEALTH_ADDRESS = ("127.0.0.1", 9999)


class Gluetun:
    """The state a real Gluetun would have: its tunnel loop's status and the forwarded ports."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.status = environ.get("STANDIN_VPN_STATUS", "running")
        forwarded = environ.get("STANDIN_FORWARDED_PORT", "")
        self.ports = [int(p) for p in forwarded.split(",") if p.strip().isdigit()]
        self.public_ip = environ.get("STANDIN_PUBLIC_IP", "203.0.113.7")
        # Older Gluetun releases have only the /v1/openvpn/... routes.
        self.legacy = environ.get("STANDIN_LEGACY_ROUTES", "") == "1"
        role = json.loads(environ.get("HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE") or "{}")
        self.api_key = role.get("apikey") if role.get("auth") == "apikey" else None

    def forwarded(self) -> list[int]:
        return list(self.ports) if self.status == "running" else []


def control_app(state: Gluetun) -> web.Application:
    app = web.Application(middlewares=[_auth(state)])
    app.router.add_route("*", "/{path:.*}", _route(state))
    return app


def _auth(state: Gluetun) -> Any:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if state.api_key is not None and request.headers.get("X-API-Key") != state.api_key:
            return web.Response(status=401, text="Unauthorized\n")
        response: web.StreamResponse = await handler(request)
        return response

    return auth


def _route(state: Gluetun) -> Any:
    async def route(request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if not path.startswith("/v1/"):
            return web.Response(status=404, text="404 page not found\n")
        key = (request.method, path.removeprefix("/v1"))
        if state.legacy and key[1] in ("/vpn/status", "/portforward"):
            return web.Response(status=400, text=f"{request.method} {key[1]} not found\n")
        if key in (("GET", "/vpn/status"), ("GET", "/openvpn/status")):
            return _json({"status": state.status})
        if key in (("PUT", "/vpn/status"), ("PUT", "/openvpn/status")):
            return await _set_status(state, request)
        if key == ("GET", "/openvpn/portforwarded"):
            ports = state.forwarded()
            return _json({"port": ports[0] if ports else 0})
        if key == ("GET", "/portforward"):
            ports = state.forwarded()
            return _json({"port": ports[0] if ports else 0, "ports": ports or None})
        if key == ("PUT", "/portforward"):
            return await _set_ports(state, request)
        if key == ("GET", "/publicip/ip"):
            return _json({"public_ip": state.public_ip})
        if key == ("GET", "/version"):
            return _json({"version": "standin", "commit": "", "created": ""})
        return web.Response(status=400, text=f"{request.method} {key[1]} not found\n")

    return route


async def _set_status(state: Gluetun, request: web.Request) -> web.Response:
    body = await _body(request)
    status = body.get("status")
    if status not in STATUSES:
        return web.Response(status=400, text=f"invalid status: {status}: possible values are: "
                            "stopped, running\n")  # fmt: skip
    state.status = str(status)
    return _json({"outcome": state.status})


async def _set_ports(state: Gluetun, request: web.Request) -> web.Response:
    ports = (await _body(request)).get("ports")
    if not isinstance(ports, list) or not all(isinstance(p, int) for p in ports):
        return web.Response(status=400, text="failed setting forwarded ports\n")
    state.ports = list(ports)
    return web.Response(status=200)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _json(data: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(data) + "\n", content_type="application/json")


def health_app(state: Gluetun) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        if state.status == "running":
            return web.Response(text="")
        return web.Response(status=500, text="VPN is not running\n")

    app = web.Application()
    app.router.add_get("/", health)
    return app


def healthcheck() -> int:
    """The Docker health check: 0 when the health server says the tunnel is up."""
    try:
        with urllib.request.urlopen("http://{}:{}/".format(*HEALTH_ADDRESS), timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except OSError:
        return 1


def main() -> None:
    if sys.argv[1:] == ["healthcheck"]:
        raise SystemExit(healthcheck())
    address = os.environ.get("HTTP_CONTROL_SERVER_ADDRESS", ":8000")
    port = int(address.rpartition(":")[2] or 8000)
    state = Gluetun(dict(os.environ))
    app = control_app(state)

    async def with_health(app: web.Application) -> AsyncIterator[None]:
        health = web.AppRunner(health_app(state))
        await health.setup()
        await web.TCPSite(health, *HEALTH_ADDRESS).start()
        yield
        await health.cleanup()

    app.cleanup_ctx.append(with_health)
    print(f"gluetun stand-in: control server on :{port}", flush=True)
    web.run_app(app, host="0.0.0.0", port=port, print=None)


if __name__ == "__main__":
    main()
