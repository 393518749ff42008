"""Stand-in VPN containers for VPN-mode tests: each holds a network namespace, publishes a share of
engine ports and Gluetun's control port, and is told what to answer through Gluetun's own routes."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support import vpn_standin_image


@dataclass
class VpnStandin:
    """One running stand-in VPN container."""

    name: str
    published: tuple[int, int]

    @property
    def control_url(self) -> str:
        out = docker("port", self.name, "8000/tcp").splitlines()
        host, _, port = out[0].rpartition(":")
        return f"http://{host.strip('[]')}:{port}"

    def inspect(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(docker("inspect", self.name))
        return data[0]

    @property
    def id(self) -> str:
        return str(self.inspect()["Id"])

    def wait_up(self, *, healthy: bool, timeout_s: float = 30) -> None:
        """Until its control server answers (and, with a health check, Docker finds it healthy),
        as a Gluetun that finished connecting would."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            health = state.get("Health", {}).get("Status")
            try:
                with urllib.request.urlopen(self.control_url + "/v1/version", timeout=2):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            if not healthy or health == "healthy":
                return
            time.sleep(0.2)
        raise AssertionError(f"stand-in VPN {self.name} did not come up")

    async def put(self, route: str, body: dict[str, Any]) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.put(self.control_url + route, json=body) as resp:
                assert resp.status == 200, await resp.text()

    async def tunnel(self, status: str) -> None:
        """Gluetun's documented way to stop or start the tunnel."""
        await self.put("/v1/vpn/status", {"status": status})

    async def forward(self, *ports: int) -> None:
        """Gluetun's route that sets the forwarded ports."""
        await self.put("/v1/portforward", {"ports": list(ports)})


def docker(*args: str) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


@contextmanager
def vpn_standin(
    name: str,
    published: tuple[int, int],
    *,
    health_check: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[VpnStandin]:
    """A stand-in VPN container publishing ``published`` (inclusive) on 127.0.0.1, and its
    control port on a port Docker picks; removed afterwards."""
    lo, hi = published
    health = (
        ["--health-interval", "1s", "--health-start-period", "0s", "--health-retries", "1"]
        if health_check
        else ["--no-healthcheck"]
    )
    extra = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
    docker(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{lo}-{hi}:{lo}-{hi}",
        "-p", "127.0.0.1::8000", *health, *extra, vpn_standin_image(),
    )  # fmt: skip
    try:
        standin = VpnStandin(name, published)
        standin.wait_up(healthy=health_check)
        yield standin
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
