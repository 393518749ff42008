"""The fleet's Swarm calls against a real single-node Swarm: an engine made as a one-replica
service answers at its node's address and published port, a killed task comes back as a new
engine (a new task id), and removal removes the service; the manager lists its node and sends
its node events."""

from __future__ import annotations

import asyncio

import pytest

from acestream_gateway.fleet.docker import docker_client
from acestream_gateway.fleet.specs import instance_filter
from acestream_gateway.fleet.swarm_nodes import SWARM_EVENTS, engine_addresses
from acestream_gateway.fleet.swarm_specs import (
    SwarmEngine,
    follow_tasks,
    running_engines,
    service_spec,
)
from tests.equipment.swarm import Swarm
from tests.integration.test_equipment_hosts_docker import answers
from tests.support import emulator_fleet_settings, wait_until

pytestmark = pytest.mark.docker


async def test_an_engine_service_answers_and_its_killed_task_is_a_new_engine(
    swarm_docker: Swarm, instance: str
) -> None:
    settings = emulator_fleet_settings(instance, 1, max_active_replicas=1)
    port = settings.port_range_host.lo
    swarm_docker.label_node("acestream", "true")
    async with docker_client(swarm_docker.docker_host) as docker:
        spec = service_spec(settings, port, ["node.labels.acestream==true"])
        service_id = await docker.create_service(spec)
        filters = instance_filter(settings)
        assert [s.id for s in await docker.services(filters)] == [service_id]

        seen: list[SwarmEngine] = []

        async def engine(other_than: str = "") -> bool:
            tasks = await docker.tasks({"service": [service_id]})
            found = running_engines(tasks, engine_addresses(await docker.nodes())).get(service_id)
            if found is None or found.task_id == other_than:
                return False
            seen.append(found)
            return True

        await wait_until(engine, timeout_s=60, interval_s=0.5)
        first = seen[-1]
        assert first.address.host == swarm_docker.node_address
        assert first.address.port == port
        await wait_until(lambda: answers(first.address.host, port), timeout_s=30)

        task = swarm_docker.running_task(spec["Name"])
        assert task is not None
        swarm_docker.daemon.docker("kill", task.container_id)
        await wait_until(lambda: engine(first.task_id), timeout_s=60, interval_s=0.5)
        second = seen[-1]
        changes = follow_tasks({first.task_id}, {service_id: second})
        assert changes.gone == (first.task_id,)
        assert changes.new == (second,)
        await wait_until(lambda: answers(second.address.host, port), timeout_s=30)

        await docker.remove_service(service_id)
        await docker.remove_service(service_id)  # already gone counts as removed
        assert await docker.services(filters) == ()


async def test_a_manager_sends_its_node_events(swarm_docker: Swarm) -> None:
    node = swarm_docker.daemon.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
    async with (
        docker_client(swarm_docker.docker_host) as docker,
        docker.watch_swarm(SWARM_EVENTS) as events,
    ):
        (listed,) = await docker.nodes()
        assert (listed.id, listed.address, listed.state) == (
            node,
            swarm_docker.node_address,
            "ready",
        )
        assert listed.reachable
        swarm_docker.daemon.docker("node", "update", "--label-add", "followed=yes", node)
        event = await asyncio.wait_for(anext(aiter(events)), timeout=30)
    assert (event.kind, event.id, event.action) == ("node", node, "update")
