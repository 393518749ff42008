"""A Docker API proxy on a Unix socket that refuses chosen calls: it forwards every call to the real
daemon, except the container removals it is told to refuse (a container Docker cannot remove)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

DOCKER_SOCKET = "/var/run/docker.sock"
_HOP = {"host", "connection", "transfer-encoding", "content-length", "keep-alive"}


class DockerProxy:
    """Forwards to the daemon; ``refuse_removal`` holds container ids whose DELETE fails."""

    def __init__(self, upstream: aiohttp.ClientSession) -> None:
        self._upstream = upstream
        self.refuse_removal: set[str] = set()
        self.refused = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE" and self._refused(request.path):
            self.refused += 1
            return web.json_response({"message": "removal refused by the test"}, status=500)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._upstream.request(
            request.method,
            "http://docker" + request.rel_url.path_qs,
            headers=headers,
            data=await request.read(),
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, body=body, headers=kept)

    def _refused(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        return any(
            part == "containers" and i + 1 < len(parts) and parts[i + 1] in self.refuse_removal
            for i, part in enumerate(parts)
        )


@asynccontextmanager
async def docker_proxy(socket_path: Path) -> AsyncIterator[DockerProxy]:
    """A running proxy listening on ``socket_path`` (use ``unix://<socket_path>``)."""
    connector = aiohttp.UnixConnector(path=DOCKER_SOCKET)
    async with aiohttp.ClientSession(connector=connector) as upstream:
        proxy = DockerProxy(upstream)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.UnixSite(runner, str(socket_path))
        await site.start()
        try:
            yield proxy
        finally:
            await runner.cleanup()
