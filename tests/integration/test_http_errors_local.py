"""Every error answer is JSON with a reason, aiohttp's own (unknown path, wrong method) too."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.local import gateway, settings


@pytest.mark.parametrize("path", ["/nothing", "/ace/getstream/extra", "/engines/x/y/z"])
async def test_an_unknown_path_gets_404_as_json(path: str) -> None:
    async with gateway(settings()) as server, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}{path}") as resp:
            assert resp.status == 404
            assert resp.content_type == "application/json"
            body = await resp.json()
            assert body["error"] == "not_found"
            assert body["detail"]


async def test_a_wrong_method_gets_405_as_json_with_the_allowed_methods() -> None:
    async with gateway(settings()) as server, aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{server.port}/health") as resp:
            assert resp.status == 405
            assert resp.content_type == "application/json"
            assert "GET" in resp.headers["Allow"]
            body = await resp.json()
            assert body["error"] == "method_not_allowed"
            assert "POST" in body["detail"]
            assert "GET" in body["detail"]
