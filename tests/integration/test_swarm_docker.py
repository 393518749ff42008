"""FLEET_BACKEND=swarm for real, on a single-node Swarm the tests own: engines run as one-replica
services, a channel plays through them, the task of its engine's service killed → Swarm runs a new
task and the channel fails over (its player keeps its connection), and a restarted gateway adopts
the services (no duplicate)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.engines.model import EngineState
from acestream_gateway.http.keys import POOL, REGISTRY
from acestream_gateway.settings import Settings
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
            assert server.app[POOL].get(victim.id) is None, "the killed task's engine left"
            # Swarm ran a new task for the service: a new engine, probed until ready.
            await wait_until(
                lambda: any(e.name == victim.name for e in server.app[POOL].engines()),
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
