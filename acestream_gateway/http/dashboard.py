"""``GET /dashboard``: the operators' live page, and its watch page, served from the package (no
build step, nothing fetched from elsewhere).

The pages hold no data: the dashboard's script polls the JSON endpoints (status, listings) with
the API key the operator typed in, so PROTECT_READS guards what it shows and the management API's
checks guard what it does; the watch page plays a channel's ``/ace/manifest.m3u8`` with the
player token typed in, so the player endpoints' own checks guard it. The player is hls.js,
vendored in ``static/vendor/`` (``scripts/vendor-hlsjs``). The assets are read once, when this
module is imported, so a package that lacks them fails at start rather than on the first visit.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from types import MappingProxyType
from typing import Final, NamedTuple

from aiohttp import web

routes = web.RouteTableDef()

# Only the pages' own files, from this origin: a script or style injected through data they show
# could not run, and nothing is loaded from the internet.
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The watch page also plays media: hls.js feeds the <video> through a MediaSource (a blob: URL),
# a browser's own HLS reads the playlist itself, and hls.js transmuxes in a worker from its file.
_WATCH_POLICY = f"{_POLICY}; media-src 'self' blob:; worker-src 'self'"
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "": "text/plain; charset=utf-8",
}
_PAGES = ("dashboard.html", "dashboard.js", "dashboard.css", "watch.html", "watch.js")
_VENDOR = ("hls.min.js", "hls.worker.js", "LICENSE", "VERSION")


def _type(name: str) -> str:
    return _TYPES[name.rsplit(".", 1)[1] if "." in name else ""]


class Asset(NamedTuple):
    body: bytes
    content_type: str
    etag: str  # of the body: a browser revalidates (no-cache) and gets 304 while it is unchanged


def _read(name: str) -> Asset:
    body = (resources.files("acestream_gateway.http") / "static" / name).read_bytes()
    return Asset(body, _type(name), hashlib.sha256(body).hexdigest()[:32])


ASSETS: Final = MappingProxyType(
    {name: _read(name) for name in [*_PAGES, *(f"vendor/{name}" for name in _VENDOR)]}
)


def _asset(request: web.Request, name: str) -> web.Response:
    asset = ASSETS[name]
    policy = _WATCH_POLICY if name.startswith(("watch.", "vendor/")) else _POLICY
    headers = {
        "Cache-Control": "no-cache",
        "ETag": f'"{asset.etag}"',
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if any(tag.value == asset.etag for tag in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    """The gateway's front door is its dashboard."""
    # Relative, so the redirect also holds behind a reverse proxy that adds a path prefix.
    raise web.HTTPFound("dashboard")


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.Response:
    """The live page: fleet, capacity, streams, provisioning, and the management actions."""
    return _asset(request, "dashboard.html")


@routes.get("/dashboard/watch")
async def watch(request: web.Request) -> web.Response:
    """The watch page: one channel's HLS output in a video element (the channel in the query)."""
    return _asset(request, "watch.html")


@routes.get("/dashboard/{name:dashboard\\.(?:js|css)|watch\\.js}")
async def dashboard_asset(request: web.Request) -> web.Response:
    """The pages' scripts and their style sheet."""
    return _asset(request, request.match_info["name"])


@routes.get("/dashboard/vendor/{name:hls\\.min\\.js|hls\\.worker\\.js|LICENSE|VERSION}")
async def vendor_asset(request: web.Request) -> web.Response:
    """hls.js, its transmuxing worker (which runs under this policy too), its licence and
    version."""
    return _asset(request, f"vendor/{request.match_info['name']}")
