"""FLEET_BACKEND=swarm for real, on a single-node Swarm the tests own: engines run as one-replica
services, a channel plays through them, the task of its engine's service killed → Swarm runs a new
task and the channel fails over (its player keeps its connection), and a restarted gateway adopts
the services (no duplicate). The status, /engines and the dashboard show the node with its
engines and their ports; the node drained → its engines leave the pool and the status says
drained; active again → the same services run engines again, none duplicated."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.engines.model import EngineState
from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.settings import Settings
from tests.browser import chromium, severe
from tests.equipment.swarm import Swarm
from tests.support import CHANNEL, Player, emulator_fleet_settings, wait_until
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker


def swarm_settings(instance: str) -> Settings:
    return emulator_fleet_settings(
        instance,
        3,
        fleet_backend="swarm",
        swarm_constraints="node.labels.acestream==true",
        engine_env={"EMULATOR_PREBUFFER_S": "0.3", "EMULATOR_BITRATE_BPS": "2000000"},
        max_active_replicas=3,
        min_replicas=1,
        max_streams_per_engine=1,
        health_check_interval_s=1,
        engine_grace_period_s=600,
        stream_linger_s=0.5,
        stall_timeout_s=2,
        first_data_timeout_s=10,
        failover_backoff_s=0.2,
        provision_wait_s=60,
        docker_timeout_s=20,
        engine_startup_timeout_s=60,
    )


def ready(server: TestServer) -> set[str]:
    return {x.engine.id for x in server.app[POOL].snapshot() if x.engine.state is EngineState.READY}


def services(swarm: Swarm, instance: str) -> list[str]:
    listed = swarm.daemon.docker(
        "service", "ls", "-q", "--filter", f"label=acestream-gateway.instance={instance}"
    )
    return sorted(listed.stdout.split())


async def test_engines_run_as_services_a_killed_task_fails_over_and_a_restart_adopts(
    swarm_docker: Swarm, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", swarm_docker.docker_host)
    swarm_docker.label_node("acestream", "true")
    settings = swarm_settings(instance)
    async with gateway(settings) as server:
        await wait_until(lambda: len(ready(server)) == 1, timeout_s=90)
        (engine,) = server.app[POOL].engines()
        assert engine.address.host == swarm_docker.node_address
        spec = json.loads(swarm_docker.daemon.docker("service", "inspect", engine.name).stdout)[0]
        ports = spec["Spec"]["EndpointSpec"]["Ports"]
        assert [(p["PublishMode"], p["PublishedPort"]) for p in ports] == [
            ("host", engine.address.port)
        ]
        assert spec["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [
            "node.labels.acestream==true"
        ]

        player = Player(f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}")
        try:
            await player.receives(188 * 1000, timeout_s=60)
            await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)  # a spare beside it
            (channel,) = server.app[REGISTRY].channels()
            assert channel.claim is not None
            victim = channel.claim.engine
            task = swarm_docker.running_task(victim.name)
            assert task is not None
            assert task.id == victim.id, "the engine is the service's running task"
            swarm_docker.daemon.docker("kill", task.container_id)
            await player.receives(200_000, timeout_s=30)
            assert not player.ended.is_set(), "the player keeps its connection"
            # The pass that finds the task stopped runs beside the channel's failover.
            await wait_until(lambda: server.app[POOL].get(victim.id) is None, timeout_s=5)
            # Swarm ran a new task for the service: a new engine, probed until ready (until it
            # runs, the service stands in as a starting engine under the service's id).
            await wait_until(
                lambda: any(
                    e.name == victim.name and e.state is EngineState.READY
                    for e in server.app[POOL].engines()
                ),
                timeout_s=90,
            )
            assert all(e.id != victim.id for e in server.app[POOL].engines())
        finally:
            await player.close()
        before = services(swarm_docker, instance)
        engines_before = {e.id for e in server.app[POOL].engines()}

    async with gateway(settings) as server:
        await wait_until(lambda: ready(server) == engines_before, timeout_s=60)
        assert services(swarm_docker, instance) == before, "adopted, no duplicate service"


def node_of(status: dict[str, Any]) -> dict[str, Any]:
    (endpoint,) = status["endpoints"]
    (node,) = endpoint["nodes"]
    result: dict[str, Any] = node
    return result


async def test_the_status_lists_the_node_and_a_drained_node_takes_its_engines_out_until_active(
    swarm_docker: Swarm, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", swarm_docker.docker_host)
    swarm_docker.label_node("acestream", "true")
    node_id = swarm_docker.daemon.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
    settings = swarm_settings(instance).model_copy(update={"min_replicas": 2})
    async with gateway(settings) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}"

        async def status() -> dict[str, Any]:
            async with http.get(f"{base}/orchestrator/status") as response:
                body: dict[str, Any] = await response.json()
                return body

        await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
        engines = server.app[POOL].engines()
        node = node_of(await status())
        assert (node["id"], node["address"], node["role"]) == (
            node_id,
            swarm_docker.node_address,
            "manager",
        )
        assert (node["reachable"], node["condition"]) == (True, "ready")
        assert sorted((e["id"], e["port"]) for e in node["engines"]) == sorted(
            (e.id, e.address.port) for e in engines
        )
        async with http.get(f"{base}/engines") as response:
            assert {e["node"] for e in await response.json()} == {node_id}
        async with chromium() as browser:
            await browser.open(f"{base}/dashboard")
            ports = ", ".join(str(p) for p in sorted(e.address.port for e in engines))
            line = await browser.text_of(f'li[data-node="{node_id}"]', lambda t: ports in t)
            assert line.endswith(
                f"({swarm_docker.node_address}): ready · manager · 2 engines on {ports}"
            )
            assert severe(await browser.console()) == []
        before = services(swarm_docker, instance)

        try:
            swarm_docker.daemon.docker("node", "update", "--availability", "drain", node_id)
            await wait_until(lambda: not ready(server), timeout_s=30)
            assert all(server.app[POOL].get(e.id) is None for e in engines), "their engines left"
            node = node_of(await status())
            assert (node["availability"], node["condition"]) == ("drain", "drained")
            assert not node["reachable"]
            assert node["engines"] == []
            # No node can take an engine: a new channel is refused at once, saying why.
            async with http.get(f"{base}/ace/getstream?id={'b' * 40}") as response:
                refused = await response.json()
                assert response.status == 503
            assert refused["reason"] == "no_swarm_node"
            assert "is drained" in refused["detail"]
        finally:
            swarm_docker.daemon.docker("node", "update", "--availability", "active", node_id)
        await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
        assert services(swarm_docker, instance) == before, "the same services, no duplicate"
        node = node_of(await status())
        assert (node["reachable"], len(node["engines"])) == (True, 2)
