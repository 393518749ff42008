"""The failover phase's view of a gateway's engine fleet: its containers through the docker CLI,
which engine carries a channel through the emulator's own counters, and the gateway's readiness.

Everything here is asynchronous (subprocesses and aiohttp, each under a timeout), so players keep
reading, and their arrival times stay true, while the driver looks at the fleet.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass

import aiohttp

_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=3)


class FleetError(RuntimeError):
    """Docker or the gateway did not answer as the phase expects."""


@dataclass(frozen=True, slots=True)
class EngineBox:
    """A running engine container of the instance, and the host port its engine answers on."""

    id: str
    name: str
    port: int


async def docker(*args: str, timeout_s: float = 60.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FleetError(f"docker {args[0]} took more than {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise FleetError(f"docker {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


def _filters(instance: str) -> list[str]:
    return [
        *("--filter", "label=acestream-gateway.managed=true"),
        *("--filter", f"label=acestream-gateway.instance={instance}"),
    ]


async def running_engines(instance: str) -> list[EngineBox]:
    fmt = '{{.ID}} {{.Names}} {{.Label "acestream-gateway.port"}}'
    out = await docker("ps", *_filters(instance), "--format", fmt)
    boxes = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            boxes.append(EngineBox(parts[0], parts[1], int(parts[2])))
    return boxes


async def sessions_active(http: aiohttp.ClientSession, port: int) -> int | None:
    """The emulator's count of active sessions, or None when it does not answer."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/emulator/stats", timeout=_HTTP_TIMEOUT) as r:
            return int((await r.json())["sessions_active"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
        return None


async def carrying(http: aiohttp.ClientSession, instance: str) -> list[EngineBox]:
    """Running engines with an active session."""
    boxes = await running_engines(instance)
    counts = await asyncio.gather(*(sessions_active(http, b.port) for b in boxes))
    return [box for box, count in zip(boxes, counts, strict=True) if count]


async def readiness(http: aiohttp.ClientSession, gateway_url: str) -> dict[str, object] | None:
    """The gateway's ``/ready`` answer when it is ready, else None."""
    try:
        async with http.get(gateway_url + "/ready", timeout=_HTTP_TIMEOUT) as resp:
            if resp.status != 200:
                return None
            body: dict[str, object] = await resp.json()
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def wait_whole(
    http: aiohttp.ClientSession, gateway_url: str, instance: str, timeout_s: float
) -> EngineBox:
    """Wait until the channel plays on exactly one engine and a ready spare stands beside it
    (``/ready`` with one engine used); returns the engine carrying the channel."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = await readiness(http, gateway_url)
        if ready is not None and ready.get("engines_used") == 1:
            busy = await carrying(http, instance)
            if len(busy) == 1:
                return busy[0]
        await asyncio.sleep(0.25)
    raise FleetError(f"no ready spare beside the channel's engine within {timeout_s:g} s")
