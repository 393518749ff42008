"""VPN mode on the real Docker daemon: engines (the emulator image) in stand-in Gluetun containers'
network namespaces, every port counted once, through VPN restarts, tunnel outages, forwarded-port
changes and a second VPN going down."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acestream_gateway.app import RECONCILER
from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.provisioning import BlockedReason
from acestream_gateway.http.keys import POOL
from acestream_gateway.settings import Settings
from tests.integration.test_failover_docker import (
    channel_id,
    fleet_settings,
    ready_engines,
)
from tests.integration.vpn_equipment import VpnStandin, vpn_standin
from tests.support import (
    ROOT,
    Player,
    containers_of,
    emulator_image,
    free_port,
    free_port_range,
    running_gateway,
    wait_until,
)
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker

ENGINE_ARGS = "--client-console --http-port {port} --port {p2p_port} --bind-all"
# Below where free_port_range() draws the published ports from, so the two never overlap.
P2P_RANGE = range(10000, 11000)


def vpn_settings(instance: str, vpns: list[VpnStandin], **overrides: Any) -> Settings:
    lo = vpns[0].published[0]
    hi = vpns[-1].published[1]
    values: dict[str, Any] = {
        "gluetun_container_name": ",".join(v.name for v in vpns),
        "port_range_host": f"{lo}-{hi}",
        "engine_args": ENGINE_ARGS,
        "p2p_port_range": f"{P2P_RANGE[0]}-{P2P_RANGE[-1]}",
        "health_probe_timeout_s": 1,
        **overrides,
    }
    settings = fleet_settings(instance, hi - lo + 1)
    return Settings(**{**settings.model_dump(), **values})


def engines_of(instance: str) -> list[dict[str, Any]]:
    return [c for c in containers_of(instance) if c["State"]["Running"]]


def label(container: dict[str, Any], name: str) -> str:
    return str(container["Config"]["Labels"][f"acestream-gateway.{name}"])


def p2p_argument(container: dict[str, Any]) -> int:
    command = container["Config"]["Cmd"]
    return int(command[command.index("--port") + 1])


async def answers(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/webui/api/service?method=get_version"
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def status_of(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        if resp.status == 200:
            return 200, {}
        body: dict[str, Any] = await resp.json()
        return resp.status, body


@pytest.fixture
def vpn(instance: str) -> Iterator[VpnStandin]:
    lo, hi = free_port_range(5)
    with vpn_standin(f"{instance}-vpn", (lo, hi)) as running:
        yield running


async def test_five_published_ports_run_five_engines_in_the_vpn_namespace_also_after_a_restart(
    instance: str, vpn: VpnStandin, tmp_path: Path
) -> None:
    lo, hi = vpn.published
    env = {
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_INSTANCE_NAME": instance,
        "GLUETUN_CONTAINER_NAME": vpn.name,
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        "P2P_PORT_RANGE": f"{P2P_RANGE[0]}-{P2P_RANGE[4]}",
        "MAX_ACTIVE_REPLICAS": "5",
        "MAX_STREAMS_PER_ENGINE": "1",
        "MIN_REPLICAS": "1",
        "ENGINE_IMAGE": emulator_image(),
        "ENGINE_PRESET": "custom",
        "ENGINE_ARGS": ENGINE_ARGS,
        "ENGINE_ENV": json.dumps({"EMULATOR_PREBUFFER_S": "0", "EMULATOR_BITRATE_BPS": "1000000"}),
        "HEALTH_CHECK_INTERVAL_S": "1",
        "PROVISION_WAIT_S": "30",
    }
    log_path = tmp_path / "gateway.log"
    async with running_gateway(env, log_path) as gw:
        players = [Player(f"{gw.url}/ace/getstream?id={channel_id(n)}") for n in range(4)]
        for player in players:
            await player.receives(50_000, timeout_s=60)
        await wait_until(lambda: len(engines_of(instance)) == 5, timeout_s=60)
        first = engines_of(instance)
        for player in players:
            await player.close()
    vpn_id = vpn.id
    ports = sorted(int(label(c, "port")) for c in first)
    assert ports == list(range(lo, hi + 1)), "5 distinct ports of the range"
    assert {c["HostConfig"]["NetworkMode"] for c in first} == {f"container:{vpn_id}"}
    assert all(c["HostConfig"]["PortBindings"] in ({}, None) for c in first), "they publish none"
    assert len({p2p_argument(c) for c in first}) == 5, "each its own P2P port"
    for port in ports:  # the last one may still be starting: it must come up at the binding
        await wait_until(lambda: answers(port), timeout_s=30)  # noqa: B023

    async with running_gateway(env, log_path) as gw:
        await wait_until(lambda: "fleet_adopted" in gw.event_names()[-50:], timeout_s=30)
        async with aiohttp.ClientSession() as http, http.get(gw.url + "/ready") as resp:
            body = await resp.json()
        assert body["engines"] == 5
        assert {c["Id"] for c in engines_of(instance)} == {c["Id"] for c in first}
        players = [Player(f"{gw.url}/ace/getstream?id={channel_id(n)}") for n in range(4)]
        for player in players:
            await player.receives(50_000, timeout_s=60)
        for player in players:
            await player.close()
        assert {c["Id"] for c in engines_of(instance)} == {c["Id"] for c in first}
        events = gw.events()
    assert [e for e in events if e.get("level") in ("error", "critical")] == []
    noisy = {"engine_ports_exhausted", "engine_port_unusable", "engine_unadoptable"}
    assert noisy.isdisjoint(str(e.get("event")) for e in events)


def test_a_range_the_vpn_does_not_publish_is_refused_at_start(instance: str) -> None:
    lo, hi = free_port_range(5)
    with vpn_standin(f"{instance}-vpn", (lo, lo + 2), health_check=False) as vpn:
        env = {
            "GATEWAY_PORT": str(free_port()),
            "GATEWAY_INSTANCE_NAME": instance,
            "GLUETUN_CONTAINER_NAME": vpn.name,
            "PORT_RANGE_HOST": f"{lo}-{hi}",
            "MAX_ACTIVE_REPLICAS": "5",
            "ENGINE_IMAGE": emulator_image(),
            "ENGINE_PRESET": "custom",
            "ENGINE_ARGS": ENGINE_ARGS,
            "LOG_FORMAT": "json",
        }
        result = subprocess.run(
            [sys.executable, "-m", "acestream_gateway", "serve"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert result.returncode == 2
        # The log (JSON lines on stderr) has the event; the one human line says it all.
        (line,) = [x for x in result.stderr.splitlines() if not x.startswith("{")]
        assert '"event": "gateway_misconfigured"' in result.stderr
        assert line == (
            f"acestream-gateway: configuration error: PORT_RANGE_HOST: VPN container {vpn.name} "
            f"(GLUETUN_CONTAINER_NAME) must publish its engines' ports {lo}-{hi}, but does not "
            f"publish {lo + 3}-{hi}"
        )
        assert containers_of(instance) == []


async def test_a_restarted_vpn_gets_new_engines_and_its_players_keep_playing(
    instance: str, vpn: VpnStandin
) -> None:
    settings = vpn_settings(instance, [vpn])
    size = len(settings.port_range_host)
    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) >= 1, timeout_s=60)
        players = [
            Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={channel_id(n)}")
            for n in range(2)
        ]
        for player in players:
            await player.receives(100_000, timeout_s=30)
        await wait_until(lambda: ready_engines(server) >= 3, timeout_s=60)
        before = {c["Id"] for c in engines_of(instance)}
        started = vpn.inspect()["State"]["StartedAt"]
        reconciler = server.app[RECONCILER]
        held: list[int] = []
        sampling = asyncio.create_task(sample(lambda: len(reconciler.ports.held), held))
        subprocess.run(["docker", "restart", "-t", "1", vpn.name], check=True, capture_output=True)
        for player in players:
            await player.receives(200_000, timeout_s=40)
            assert not player.ended.is_set(), "the player kept its connection"
        now = engines_of(instance)
        assert before.isdisjoint(c["Id"] for c in now), "every engine is new"
        assert {label(c, "vpn-started") for c in now} == {vpn.inspect()["State"]["StartedAt"]}
        assert started != vpn.inspect()["State"]["StartedAt"]
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        assert held
        assert max(held) <= size, "no port is counted twice at any moment"
        for player in players:
            await player.close()


async def sample(value: Any, into: list[int]) -> None:
    while True:
        into.append(value())
        await asyncio.sleep(0.05)


async def test_a_tunnel_that_is_down_refuses_channels_that_need_a_new_engine_until_it_is_up(
    instance: str, vpn: VpnStandin
) -> None:
    settings = vpn_settings(instance, [vpn], provision_wait_s=5)
    async with gateway(settings) as server:
        pool = server.app[POOL]
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        await vpn.tunnel("stopped")
        blocked = pool.provisioning
        await wait_until(
            lambda: (
                (b := blocked.current()) is not None and b.reason is BlockedReason.VPN_DISCONNECTED
            ),
            timeout_s=10,
        )
        base = f"http://127.0.0.1:{server.port}/ace/getstream?id="
        first = Player(base + channel_id(1))  # the spare engine still takes it
        await first.receives(50_000, timeout_s=30)
        status, body = await status_of(base + channel_id(2))
        assert status == 503
        assert body["reason"] == "vpn_disconnected"
        assert len(engines_of(instance)) == 1, "no engine started while the tunnel is down"
        await first.receives(50_000, timeout_s=10)  # the playing stream is left alone

        await vpn.tunnel("running")
        await wait_until(lambda: blocked.current() is None, timeout_s=15)
        second = Player(base + channel_id(2))
        await second.receives(50_000, timeout_s=60)
        for player in (first, second):
            await player.close()


async def test_exactly_one_engine_has_the_forwarded_port_and_it_follows_a_change(
    instance: str, vpn: VpnStandin
) -> None:
    await vpn.forward(45000)
    settings = vpn_settings(instance, [vpn], min_replicas=3, engine_grace_period_s=0)

    def on_port(port: int) -> list[dict[str, Any]]:
        return [c for c in engines_of(instance) if p2p_argument(c) == port]

    async with gateway(settings) as server:
        await wait_until(lambda: ready_engines(server) == 3, timeout_s=60)
        await wait_until(lambda: len(on_port(45000)) == 1, timeout_s=30)
        (holder,) = on_port(45000)
        assert label(holder, "p2p-port") == "45000"
        others = [c for c in engines_of(instance) if c["Id"] != holder["Id"]]
        assert all(p2p_argument(c) in P2P_RANGE for c in others)

        await vpn.forward(46000)
        await wait_until(lambda: len(on_port(46000)) == 1 and not on_port(45000), timeout_s=30)
        assert holder["Id"] not in {c["Id"] for c in engines_of(instance)}, "it was replaced"
        await wait_until(lambda: ready_engines(server) == 3, timeout_s=60)
        assert len(on_port(46000)) == 1
        (vpn_status,) = server.app[RECONCILER].vpn_status()
        assert vpn_status.forwarded_port == 46000


async def test_engines_spread_over_two_vpns_and_one_going_down_moves_only_its_channels(
    instance: str,
) -> None:
    lo, hi = free_port_range(6)
    with (
        vpn_standin(f"{instance}-vpn-a", (lo, lo + 2)) as vpn_a,
        vpn_standin(f"{instance}-vpn-b", (lo + 3, hi)) as vpn_b,
    ):
        settings = vpn_settings(instance, [vpn_a, vpn_b], min_replicas=2)
        async with gateway(settings) as server:
            await wait_until(lambda: ready_engines(server) == 2, timeout_s=60)
            by_vpn = {label(c, "vpn") for c in engines_of(instance)}
            assert by_vpn == {vpn_a.name, vpn_b.name}, "the first two engines are spread"
            base = f"http://127.0.0.1:{server.port}/ace/getstream?id="
            players = [Player(base + channel_id(n)) for n in range(2)]
            for player in players:
                await player.receives(100_000, timeout_s=30)
            await wait_until(lambda: ready_engines(server) == 4, timeout_s=60)
            counts = [label(c, "vpn") for c in engines_of(instance)]
            assert counts.count(vpn_a.name) == counts.count(vpn_b.name) == 2
            behind_a = {c["Id"] for c in engines_of(instance) if label(c, "vpn") == vpn_a.name}

            subprocess.run(["docker", "stop", "-t", "1", vpn_b.name], check=True)
            for player in players:
                await player.receives(200_000, timeout_s=40)
                assert not player.ended.is_set()
            await wait_until(
                lambda: {label(c, "vpn") for c in engines_of(instance)} == {vpn_a.name}, 30
            )
            still = {c["Id"] for c in engines_of(instance)}
            assert behind_a <= still, "the other VPN's engines are untouched"
            pool = server.app[POOL]
            assert all(
                e.labels["acestream-gateway.vpn"] == vpn_a.name
                for e in pool.engines()
                if e.state is EngineState.READY
            )
            reconciler = server.app[RECONCILER]
            status = {s.name: s for s in reconciler.vpn_status()}
            assert not status[vpn_b.name].connected
            assert status[vpn_b.name].engines == ()
            assert status[vpn_a.name].connected
            # The status endpoint shows the same facts, read from memory.
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{server.port}/orchestrator/status") as resp,
            ):
                shown = (await resp.json())["vpn"]
            assert shown["enabled"] is True
            by_name = {v["container"]: v for v in shown["vpns"]}
            assert by_name[vpn_b.name]["connected"] is False
            assert by_name[vpn_a.name]["connected"] is True
            assert by_name[vpn_b.name]["engines"] == []
            assert len(by_name[vpn_a.name]["engines"]) == len(status[vpn_a.name].engines)
            assert by_name[vpn_a.name]["container_id"] == status[vpn_a.name].container_id
            for player in players:
                await player.close()
