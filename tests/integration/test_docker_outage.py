"""The Docker API goes away while channels play, and comes back.

``acestream-gateway serve`` runs in a subprocess with ``DOCKER_HOST`` on a proxy the test cuts
(tests/equipment/docker_proxy.py), so only this gateway loses Docker. Players are plain HTTP
readers counting bytes; the fleet is looked at through the docker CLI, straight at the daemon.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.equipment.docker_proxy import DockerProxy, docker_proxy
from tests.support import (
    CHANNEL,
    GatewayProcess,
    containers_of,
    emulator_image,
    free_port,
    free_port_range,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.docker

CHANNELS = [CHANNEL, *(f"{n:x}" * 40 for n in range(1, 4))]
PROVISION_WAIT_S = 30


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[DockerProxy]:
    with docker_proxy(tmp_path / "docker.sock") as running:
        yield running


@dataclass
class Player:
    """One player reading a channel through the gateway; when each chunk arrived."""

    arrivals: list[float] = field(default_factory=list)
    received: int = 0

    def received_between(self, start: float, end: float) -> list[float]:
        return [t for t in self.arrivals if start <= t <= end]

    def longest_silence(self, start: float, end: float) -> float:
        times = [start, *self.received_between(start, end), end]
        return max(b - a for a, b in itertools.pairwise(times))


@asynccontextmanager
async def playing(http: aiohttp.ClientSession, url: str) -> AsyncIterator[Player]:
    """A player that started (200) and reads until the block ends."""
    player = Player()
    resp = await http.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=10))
    assert resp.status == 200, await resp.text()

    async def read() -> None:
        async for chunk in resp.content.iter_any():
            player.received += len(chunk)
            player.arrivals.append(time.monotonic())

    reader = asyncio.create_task(read())
    try:
        await wait_until(lambda: player.received > 188 * 100, timeout_s=20, interval_s=0.05)
        yield player
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        resp.close()


def running_engines(instance: str) -> list[dict[str, Any]]:
    return [c for c in containers_of(instance) if c["State"]["Running"]]


def logged(gateway: GatewayProcess, event: str) -> int:
    return gateway.event_names().count(event)


async def test_playing_channels_survive_a_docker_outage_and_the_fleet_is_whole_after_it(
    instance: str, proxy: DockerProxy, tmp_path: Path
) -> None:
    lo, hi = free_port_range(6)
    env = {
        "DOCKER_HOST": proxy.url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_INSTANCE_NAME": instance,
        "ENGINE_IMAGE": emulator_image(),
        "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
        "ENGINE_ENV": '{"EMULATOR_BURST_BYTES": "200000", "EMULATOR_PREBUFFER_S": "0.2"}',
        "MIN_REPLICAS": "1",
        "MAX_ACTIVE_REPLICAS": "4",
        "MAX_STREAMS_PER_ENGINE": "1",
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        "ENGINE_GRACE_PERIOD_S": "600",
        "HEALTH_CHECK_INTERVAL_S": "1",
        "PROVISION_WAIT_S": str(PROVISION_WAIT_S),
    }
    url = "{}/ace/getstream?id={}"
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        aiohttp.ClientSession() as http,
    ):
        assert proxy.accepted > 0, "the gateway speaks to Docker through the proxy"
        async with (
            playing(http, url.format(gateway.url, CHANNELS[0])) as first,
            playing(http, url.format(gateway.url, CHANNELS[1])) as second,
        ):
            # Two engines busy, one spare ready (MIN_REPLICAS counts empty engines).
            await wait_until(lambda: len(running_engines(instance)) == 3, timeout_s=30)
            await gateway.wait_ready(timeout_s=30)
            before = {c["Id"] for c in running_engines(instance)}

            proxy.cut()
            cut_at = time.monotonic()
            await wait_until(lambda: logged(gateway, "docker_unreachable") == 1, timeout_s=5)

            # A channel that fits on the running spare still starts.
            async with playing(http, url.format(gateway.url, CHANNELS[2])) as third:
                # One that needs a new engine is refused at once, with the reason.
                asked = time.monotonic()
                async with http.get(url.format(gateway.url, CHANNELS[3])) as refused:
                    body = await refused.json()
                    assert refused.status == 503, body
                    assert time.monotonic() - asked < 2 < PROVISION_WAIT_S
                    assert body["error"] == "no_capacity"
                    assert body["reason"] == "docker_unavailable"
                    assert int(refused.headers["Retry-After"]) >= 1
                    assert "docker.sock" not in body["detail"], "no address for players"

                await asyncio.sleep(max(0.0, cut_at + 6 - time.monotonic()))
                restored_at = time.monotonic()
                for player in (first, second):
                    assert player.longest_silence(cut_at, restored_at) < 2, "kept playing"
                assert third.received_between(asked, restored_at), "the third one plays too"
                assert {c["Id"] for c in running_engines(instance)} == before, "nothing removed"
                proxy.restore()

                # Back: relisted and reconciled, a new spare beside three busy engines, and
                # nothing duplicated.
                await wait_until(lambda: logged(gateway, "docker_reachable") == 1, timeout_s=30)
                await wait_until(lambda: len(running_engines(instance)) == 4, timeout_s=30)
                await gateway.wait_ready(timeout_s=30)
                async with playing(http, url.format(gateway.url, CHANNELS[3])):
                    pass
                for player in (first, second, third):
                    assert player.longest_silence(restored_at, time.monotonic()) < 2

        containers = containers_of(instance)
        assert all(c["State"]["Running"] for c in containers), "no leftover container"
        assert before < {c["Id"] for c in containers}
        ports = [int(c["Config"]["Labels"]["acestream-gateway.port"]) for c in containers]
        names = [c["Name"] for c in containers]
        assert len(containers) == 4
        assert len(set(ports)) == len(ports) == len(set(names))
        assert all(lo <= p <= hi for p in ports)
        assert logged(gateway, "docker_unreachable") == 1, "logged once when it went away"
        assert logged(gateway, "docker_reachable") == 1, "and once when it came back"
        assert gateway.errors() == []
