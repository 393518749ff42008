"""``GET /dashboard``: the operators' live page, served from the package (no build step, nothing
fetched from elsewhere).

The page itself holds no data: its script polls the JSON endpoints (status, listings) with the
API key the operator typed in, so PROTECT_READS guards what it shows and the management API's
checks guard what it does. The assets are read once, when this module is imported, so a package
that lacks them fails at start rather than on the first visit.
"""

from __future__ import annotations

from importlib import resources
from types import MappingProxyType
from typing import Final

from aiohttp import web

routes = web.RouteTableDef()

# Only the page's own files, from this origin: a script or style injected through data it shows
# could not run, and nothing is loaded from the internet.
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}


def _load() -> MappingProxyType[str, tuple[bytes, str]]:
    static = resources.files("acestream_gateway.http") / "static"
    names = ("dashboard.html", "dashboard.js", "dashboard.css")
    return MappingProxyType(
        {
            name: (static.joinpath(name).read_bytes(), _TYPES[name.rsplit(".", 1)[1]])
            for name in names
        }
    )


ASSETS: Final = _load()


def _asset(name: str) -> web.Response:
    body, content_type = ASSETS[name]
    return web.Response(
        body=body,
        headers={
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
            "Content-Security-Policy": _POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    """The gateway's front door is its dashboard."""
    # Relative, so the redirect also holds behind a reverse proxy that adds a path prefix.
    raise web.HTTPFound("dashboard")


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.Response:
    """The live page: fleet, capacity, streams, provisioning, and the management actions."""
    return _asset("dashboard.html")


@routes.get("/dashboard/{name:dashboard\\.(?:js|css)}")
async def dashboard_asset(request: web.Request) -> web.Response:
    """The page's script and style sheet."""
    return _asset(request.match_info["name"])
