"""Fixtures of the integration tests: engine emulators as local processes, and for Docker tests a
gateway instance name of its own per test (every container labelled with it, on the machine's
daemon and on the test-owned hosts the test used, and the gateway container named after it, is
removed afterwards), a second Docker host, a single-node Swarm and a two-node Swarm (each a
daemon, or two, that the tests start once per session and remove at its end; docs/TESTING.md)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.equipment.second_daemon import DockerDaemon, docker_daemon, need_daemon_equipment
from tests.equipment.swarm import Swarm
from tests.equipment.swarm_nodes import SwarmNodes, swarm_nodes
from tests.integration.local import Emulator
from tests.support import emulator_image, need_docker, remove_containers_of

INSTANCE_LABEL = "acestream-gateway.instance"


@pytest.fixture
def instance(request: pytest.FixtureRequest) -> Iterator[str]:
    need_docker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(
        ["docker", "rm", "-f", "-v", f"gateway-{name}"], capture_output=True, check=False
    )
    remove_containers_of(name)
    # The test-owned hosts it used are shared by the session: its containers there go too.
    if "second_docker" in request.fixturenames:
        request.getfixturevalue("second_docker").remove_labelled(f"{INSTANCE_LABEL}={name}")
    if "swarm_docker" in request.fixturenames:
        request.getfixturevalue("swarm_docker").daemon.remove_labelled(f"{INSTANCE_LABEL}={name}")
    if "two_node_swarm" in request.fixturenames:
        nodes = request.getfixturevalue("two_node_swarm")
        for daemon in (nodes.daemon, nodes.worker):  # services on the manager, tasks on both
            if daemon.running:
                daemon.remove_labelled(f"{INSTANCE_LABEL}={name}")


@pytest.fixture
def emulators() -> Iterator[Callable[..., Emulator]]:
    """Start engine emulators as local processes (knobs as keyword arguments); all are stopped
    when the test ends."""
    started: list[Emulator] = []

    def start(**knobs: str) -> Emulator:
        emulator = Emulator(**knobs)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def second_docker() -> Iterator[DockerDaemon]:
    """A second Docker host: its own daemon, namespace, bridge and TLS listener, with the emulator
    image loaded; shared by the session's tests, which remove what they make on it."""
    need_daemon_equipment()
    with docker_daemon(images=[emulator_image()]) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def swarm_docker() -> Iterator[Swarm]:
    """A single-node Swarm on a daemon of its own (never the machine's), with the emulator image
    loaded: ``docker_host`` is the manager's socket, ``node_address`` where engines are reached."""
    need_daemon_equipment()
    with docker_daemon(images=[emulator_image()]) as daemon:
        swarm = Swarm(daemon)
        swarm.init()
        yield swarm


@pytest.fixture(scope="session")
def two_node_swarm() -> Iterator[SwarmNodes]:
    """A Swarm of two nodes, a manager and a worker, each a daemon of its own in its own network
    namespace, joined by a direct wire, with the emulator image loaded into both; nothing of them
    is left on the machine afterwards (the teardown fails if anything is)."""
    need_daemon_equipment()
    with swarm_nodes(images=[emulator_image()]) as nodes:
        yield nodes
    left = nodes.daemon.leftovers() + nodes.worker.leftovers() + nodes.link.leftovers()
    assert left == [], f"the two-node Swarm left {left}"
