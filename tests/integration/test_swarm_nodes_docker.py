"""FLEET_BACKEND=swarm on a real Swarm of two nodes (a manager and a worker, each a test-owned
daemon in a namespace of its own, docs/TESTING.md): constraints place engines on the labelled node
only; a drained node's tasks move to the other node and its channel fails over there; a task killed
on the worker, which the manager's events never show, is followed all the same; a lost worker (its
daemon stopped) fails its channel over to an engine on the manager; a restarted gateway adopts
the services on both nodes, with no duplicate service and no port counted twice. Where engines
run is read from ``/engines`` (their addresses) and from the Swarm's own view of its tasks and
nodes."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.engines.model import Engine, EngineState
from acestream_gateway.http.keys import POOL, RECONCILER, REGISTRY
from acestream_gateway.settings import Settings
from tests.equipment.second_daemon import DockerDaemon
from tests.equipment.swarm import MANAGER_PORT
from tests.equipment.swarm_nodes import SwarmNodes
from tests.integration.test_failover_docker import fleet_settings
from tests.support import CHANNEL, Player, ffprobe_streams, wait_until
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker

INSTANCE_LABEL = "acestream-gateway.instance"


@pytest.fixture
def nodes(
    two_node_swarm: SwarmNodes, instance: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SwarmNodes]:
    """The session's two-node Swarm as the gateway's ``DOCKER_HOST``; afterwards both nodes are
    up, ready and active again and carry none of the test's labels."""
    monkeypatch.setenv("DOCKER_HOST", two_node_swarm.docker_host)
    try:
        yield two_node_swarm
    finally:
        two_node_swarm.restore()
        for node in (two_node_swarm.manager_id, two_node_swarm.worker_id):
            two_node_swarm.unlabel(node, placement_label(instance))


def placement_label(instance: str) -> str:
    """A node label of the test's own: labels left by another test never place its engines."""
    return f"engines-{instance}"


def nodes_settings(instance: str, **values: Any) -> Settings:
    return fleet_settings(
        instance,
        4,
        fleet_backend="swarm",
        swarm_constraints=f"node.labels.{placement_label(instance)}==true",
        provision_wait_s=60,
        engine_startup_timeout_s=60,
        **values,
    )


def ready(server: TestServer) -> dict[str, str]:
    """Ready engines: id → the address of the node they run on."""
    return {
        x.engine.id: x.engine.address.host
        for x in server.app[POOL].snapshot()
        if x.engine.state is EngineState.READY
    }


async def engines_listed(server: TestServer) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.port}/engines") as answer,
    ):
        assert answer.status == 200
        listed: list[dict[str, Any]] = await answer.json()
        return listed


def services(nodes: SwarmNodes, instance: str) -> list[str]:
    """The full ids of the instance's services on the Swarm."""
    label = f"label={INSTANCE_LABEL}={instance}"
    listed = nodes.daemon.docker("service", "ls", "-q", "--filter", label).stdout.split()
    if not listed:
        return []
    full = nodes.daemon.docker("service", "inspect", "--format", "{{.ID}}", *listed)
    return sorted(full.stdout.split())


def running_on(nodes: SwarmNodes, instance: str) -> list[str]:
    """The node of each running task of the instance's services, as Swarm sees it."""
    found = []
    for service in services(nodes, instance):
        found += [node for node, want, now in nodes.task_nodes(service) if want == now == "running"]
    return sorted(found)


async def all_run_on(nodes: SwarmNodes, instance: str, node: str) -> bool:
    """Whether Swarm runs a task of each of the instance's services, all on ``node`` (the CLI
    off the loop, which the gateway under test shares)."""
    count = len(await asyncio.to_thread(services, nodes, instance))
    return await asyncio.to_thread(running_on, nodes, instance) == [node] * count


def carrying(server: TestServer) -> Engine:
    """The engine the test's one channel plays on now."""
    (channel,) = server.app[REGISTRY].channels()
    assert channel.claim is not None
    return channel.claim.engine


def stream_arrivals(player: Player) -> list[float]:
    """When each piece of stream data arrived that holds a TS packet other than keep-alive
    (PID 0x1FFF); packets are counted from the start of the player's body."""
    times, start = [], 0
    for at, total in player.arrivals:
        first = -(-start // 188) * 188
        pids = (
            (player.data[i + 1] & 0x1F) << 8 | player.data[i + 2]
            for i in range(first, total - 187, 188)
        )
        if any(pid != 0x1FFF for pid in pids):
            times.append(at)
        start = total
    return times


def longest_silences(players: list[Player], since: float) -> list[float]:
    """Each player's longest wait between two pieces of stream data, from the last it had
    before ``since`` on: the gap a failover left in its picture."""
    gaps = []
    for player in players:
        times = stream_arrivals(player)
        points = [t for t in times if t <= since][-1:] + [t for t in times if t > since]
        assert len(points) >= 2, "the player got stream data again"
        gaps.append(max(b - a for a, b in pairwise(points)))
    return gaps


def connects(source: DockerDaemon | None, address: str, port: int) -> bool:
    """Whether a TCP connection from ``source``'s namespace (None: the machine) to
    ``address:port`` is made."""
    script = f"import socket; socket.create_connection(({address!r}, {port}), timeout=3).close()"
    enter = [] if source is None else source.namespace.enter
    command = [*enter, sys.executable, "-c", script]
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0


def test_the_nodes_are_ready_at_their_own_addresses_and_reach_each_other_directly(
    nodes: SwarmNodes,
) -> None:
    manager, worker = nodes.node(nodes.manager_id), nodes.node(nodes.worker_id)
    assert (manager.state, manager.address) == ("ready", nodes.daemon.namespace.address)
    assert (worker.state, worker.address) == ("ready", nodes.worker.namespace.address)
    wire = nodes.link
    assert wire.route(nodes.daemon.namespace, nodes.worker_address) == (
        f"dev {wire.a_if} src {nodes.manager_address}"
    )
    assert wire.route(nodes.worker.namespace, nodes.manager_address) == (
        f"dev {wire.b_if} src {nodes.worker_address}"
    )
    # Cut off from the machine, the nodes still reach each other's Swarm ports: over the wire.
    for daemon in (nodes.daemon, nodes.worker):
        daemon.disconnect(silent=False)
    try:
        assert not connects(None, nodes.manager_address, MANAGER_PORT), "the cut is real"
        assert connects(nodes.worker, nodes.manager_address, MANAGER_PORT)
        assert connects(nodes.daemon, nodes.worker_address, 7946)
    finally:
        for daemon in (nodes.daemon, nodes.worker):
            daemon.reconnect()


async def test_engines_land_on_the_only_labelled_node_and_a_channel_plays_through_it(
    nodes: SwarmNodes, instance: str
) -> None:
    nodes.label(nodes.worker_id, placement_label(instance))
    async with gateway(nodes_settings(instance, min_replicas=2)) as server:
        await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
        listed = await engines_listed(server)
        assert {e["address"] for e in listed} == {nodes.worker_address}
        assert await asyncio.to_thread(running_on, nodes, instance) == [nodes.worker_id] * 2

        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}"
        player = Player(url)
        try:
            await player.receives(188 * 1000, timeout_s=60)
            streams = await ffprobe_streams(url)
            assert "video" in {s["codec_type"] for s in streams}
            (listed_engine,) = [e for e in await engines_listed(server) if e["channels"]]
            assert listed_engine["address"] == nodes.worker_address
            assert listed_engine["id"] == carrying(server).id
        finally:
            await player.close()


async def test_a_drained_nodes_channel_fails_over_to_the_other_node_and_its_players_stay(
    nodes: SwarmNodes, instance: str
) -> None:
    for node in (nodes.manager_id, nodes.worker_id):
        nodes.label(node, placement_label(instance))
    async with gateway(nodes_settings(instance)) as server:
        await wait_until(lambda: len(ready(server)) == 1, timeout_s=90)
        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}"
        players = [Player(url), Player(url)]
        try:
            for player in players:
                await player.receives(188 * 500, timeout_s=60)
            # The spare beside the channel's engine: Swarm spreads services over the nodes.
            await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
            victim = carrying(server)
            drained = (
                nodes.manager_id
                if victim.address.host == nodes.manager_address
                else nodes.worker_id
            )
            other = nodes.worker_id if drained == nodes.manager_id else nodes.manager_id
            assert set(ready(server).values()) == {nodes.manager_address, nodes.worker_address}

            drained_at = time.monotonic()
            await asyncio.to_thread(nodes.drain, drained)
            for player in players:
                await player.receives(200_000, timeout_s=30)
            gaps = longest_silences(players, drained_at)
            assert not any(p.ended.is_set() for p in players), "the players keep their connections"
            assert carrying(server).address.host == nodes.address_of(other)
            # Swarm moved the drained node's task to the other node, where it is a new engine
            # of the same service (the gateway may have started a spare there meanwhile).
            await wait_until(lambda: all_run_on(nodes, instance, other), timeout_s=60)
            count = len(await asyncio.to_thread(services, nodes, instance))
            await wait_until(lambda: len(ready(server)) == count, timeout_s=60)
            assert set(ready(server).values()) == {nodes.address_of(other)}
            moved = [e for e in server.app[POOL].engines() if e.name == victim.name]
            assert [e.id != victim.id for e in moved] == [True], "its new task is a new engine"
            listed = await engines_listed(server)
            assert {e["address"] for e in listed} == {nodes.address_of(other)}
            print(
                f"players' gap when their engine's node is drained: median "
                f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s over {len(gaps)} players"
            )
            assert max(gaps) < 15, gaps
        finally:
            for player in players:
                await player.close()


async def test_a_killed_task_on_the_worker_is_followed_though_the_manager_sees_no_event(
    nodes: SwarmNodes, instance: str
) -> None:
    nodes.label(nodes.worker_id, placement_label(instance))
    async with gateway(nodes_settings(instance)) as server:
        await wait_until(lambda: len(ready(server)) == 1, timeout_s=90)
        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}"
        player = Player(url)
        try:
            await player.receives(188 * 500, timeout_s=60)
            await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
            victim = carrying(server)
            inspected = await asyncio.to_thread(
                nodes.daemon.docker, "service", "inspect", "--format", "{{.ID}}", victim.name
            )
            service = inspected.stdout.strip()
            task = await asyncio.to_thread(nodes.running_task, victim.name)
            assert task is not None
            assert (task.id, task.node_address) == (victim.id, nodes.worker_address)
            killed_at = time.monotonic()
            # The container runs on the worker: its death is an event of the worker's daemon
            # only, never of the manager's the gateway follows.
            await asyncio.to_thread(nodes.worker.docker, "kill", task.container_id)
            await player.receives(200_000, timeout_s=30)
            assert not player.ended.is_set(), "the player keeps its connection"
            assert carrying(server).id != victim.id
            # Swarm ran a new task of the same service: the gateway takes it as a new engine and
            # keeps the service (it neither removes it nor makes another in its place).
            await wait_until(
                lambda: any(
                    e.name == victim.name and e.id != victim.id for e in server.app[POOL].engines()
                ),
                timeout_s=60,
            )
            followed_in = time.monotonic() - killed_at
            assert server.app[POOL].get(victim.id) is None
            assert service in await asyncio.to_thread(services, nodes, instance)
            print(f"a killed task on the worker was followed in {followed_in:.1f} s")
        finally:
            await player.close()


async def test_a_lost_worker_fails_its_channel_over_to_an_engine_on_the_manager(
    nodes: SwarmNodes, instance: str
) -> None:
    label = placement_label(instance)
    nodes.label(nodes.worker_id, label)
    async with gateway(nodes_settings(instance)) as server:
        await wait_until(lambda: list(ready(server).values()) == [nodes.worker_address], 90)
        await asyncio.to_thread(nodes.label, nodes.manager_id, label)
        url = f"http://127.0.0.1:{server.port}/ace/getstream?id={CHANNEL}"
        players = [Player(url), Player(url)]
        try:
            for player in players:
                await player.receives(188 * 500, timeout_s=60)
            assert carrying(server).address.host == nodes.worker_address
            # The spare goes where Swarm has room and fewer tasks: the manager.
            await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
            assert sorted(ready(server).values()) == sorted(
                [nodes.manager_address, nodes.worker_address]
            )

            lost_at = time.monotonic()
            await asyncio.to_thread(nodes.worker.stop)
            for player in players:
                await player.receives(200_000, timeout_s=30)
            gaps = longest_silences(players, lost_at)
            assert not any(p.ended.is_set() for p in players), "the players keep their connections"
            assert carrying(server).address.host == nodes.manager_address
            # The manager marks the worker down and runs its task anew on itself.
            await asyncio.to_thread(nodes.wait_node, nodes.worker_id, "down", 60)
            await wait_until(
                lambda: sorted(ready(server).values()) == [nodes.manager_address] * 2,
                timeout_s=60,
            )
            print(
                f"players' gap when their engine's worker is lost: median "
                f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s over {len(gaps)} players"
            )
            assert max(gaps) < 15, gaps
        finally:
            for player in players:
                await player.close()


async def test_a_restarted_gateway_adopts_the_services_on_both_nodes_once(
    nodes: SwarmNodes, instance: str
) -> None:
    for node in (nodes.manager_id, nodes.worker_id):
        nodes.label(node, placement_label(instance))
    settings = nodes_settings(instance, min_replicas=2)
    async with gateway(settings) as server:
        await wait_until(lambda: len(ready(server)) == 2, timeout_s=90)
        before = ready(server)
        assert sorted(before.values()) == sorted([nodes.manager_address, nodes.worker_address])
        listed_before = sorted((e["address"], e["port"]) for e in await engines_listed(server))
        services_before = services(nodes, instance)
        assert len(services_before) == 2

    async with gateway(settings) as server:
        await wait_until(lambda: ready(server) == before, timeout_s=60)
        reconciler = server.app[RECONCILER]
        await reconciler.reconcile()  # another pass changes nothing
        assert ready(server) == before
        assert services(nodes, instance) == services_before, "adopted, no duplicate service"
        listed = sorted((e["address"], e["port"]) for e in await engines_listed(server))
        assert listed == listed_before
        held = reconciler.ports.held
        assert sorted(held) == sorted(port for _, port in listed), "each port held once"
        assert sorted(held.values()) == services_before
