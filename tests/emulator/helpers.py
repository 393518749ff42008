"""Small client-side steps the emulator tests share: start a session, open its stream, read."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from acestream_gateway.emulator.server import Emulator
from tests.support import need_ffprobe

CONTENT_ID = "0123456789abcdef0123456789abcdef01234567"
OTHER_ID = "fedcba9876543210fedcba9876543210fedcba98"


async def get_json(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    async with http.get(url, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(content_type=None)


async def start_session(
    http: aiohttp.ClientSession,
    emulator: Emulator,
    *,
    path: str = "/ace/getstream",
    headers: dict[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    **params: str,
) -> dict[str, Any]:
    """getstream with format=json; returns the ``response`` object (asserts there is one)."""
    params = {**(query or {}), **params, "format": "json"}
    if not {"id", "content_id", "infohash", "url", "magnet"} & set(params):
        params["id"] = CONTENT_ID
    answer = await get_json(http, emulator.url + path, params=params, headers=headers)
    assert answer["error"] is None, answer
    response: dict[str, Any] = answer["response"]
    return response


async def content_url(http: aiohttp.ClientSession, playback_url: str) -> str:
    async with http.get(playback_url, allow_redirects=False) as resp:
        assert resp.status == 302
        return resp.headers["Location"]


async def open_stream(http: aiohttp.ClientSession, playback_url: str) -> aiohttp.ClientResponse:
    """Follow the playback URL to its /content/ URL and return the (unread) stream response."""
    return await http.get(await content_url(http, playback_url))


async def read_at_least(resp: aiohttp.ClientResponse, size: int, timeout_s: float = 10) -> bytes:
    data = bytearray()
    async with asyncio.timeout(timeout_s):
        while len(data) < size:
            chunk = await resp.content.read(size - len(data))
            if not chunk:
                break
            data += chunk
    return bytes(data)


async def read_for(resp: aiohttp.ClientResponse, seconds: float) -> int:
    """How many bytes arrive within `seconds`."""
    deadline = time.monotonic() + seconds
    total = 0
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                chunk = await resp.content.readany()
        except TimeoutError:
            break
        if not chunk:
            break
        total += len(chunk)
    return total


async def read_to_eof(resp: aiohttp.ClientResponse, timeout_s: float = 5) -> int:
    total = 0
    async with asyncio.timeout(timeout_s):
        while chunk := await resp.content.readany():
            total += len(chunk)
    return total


async def stats(http: aiohttp.ClientSession, emulator: Emulator) -> dict[str, Any]:
    result: dict[str, Any] = await get_json(http, emulator.control_url + "/emulator/stats")
    return result


async def control(
    http: aiohttp.ClientSession, emulator: Emulator, **changes: object
) -> dict[str, Any]:
    async with http.post(emulator.control_url + "/emulator/control", json=changes) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body


async def wait_for_readers(
    http: aiohttp.ClientSession, emulator: Emulator, count: int, timeout_s: float = 5
) -> None:
    """Until the emulator has noticed readers come or go."""
    async with asyncio.timeout(timeout_s):
        while True:
            if (await stats(http, emulator))["readers_active"] == count:
                return
            await asyncio.sleep(0.05)


async def probe(url: str, timeout_s: float = 30) -> dict[str, Any]:
    """ffprobe's JSON view of a URL (streams and format)."""
    proc = await asyncio.create_subprocess_exec(
        need_ffprobe(),
        *("-v", "error", "-show_streams", "-show_format", "-of", "json", url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode(errors="replace")
    result: dict[str, Any] = json.loads(out)
    return result
