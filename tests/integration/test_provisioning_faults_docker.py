"""Provisioning when Docker answers late, refuses a call or is slow, seen from outside.

``acestream-gateway serve`` runs in a subprocess with ``DOCKER_HOST`` on the Docker API proxy of
the test equipment (tests/equipment/docker_proxy.py), which forwards to the real daemon and
injects exactly the faults a test asks for: an answer held past ``DOCKER_TIMEOUT_S`` after Docker
made the container, a refused inspect, every call slowed. The gateway is looked at through its own
status and metrics; the containers through the docker CLI, straight at the daemon.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.equipment.docker_faults import Fault, answer, delay_answer, delay_request, drop
from tests.equipment.docker_proxy import DockerProxy, docker_proxy
from tests.support import (
    GatewayProcess,
    containers_of,
    emulator_image,
    free_port,
    free_port_range,
    wait_until,
)

pytestmark = pytest.mark.docker

DOCKER_TIMEOUT_S = 2
PORT_LABEL = "acestream-gateway.port"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[DockerProxy]:
    with docker_proxy(tmp_path / "docker.sock") as running:
        yield running


def gateway_env(
    instance: str, proxy: DockerProxy, ports: tuple[int, int], **extra: str
) -> dict[str, str]:
    lo, hi = ports
    return {
        "DOCKER_HOST": proxy.url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_INSTANCE_NAME": instance,
        "ENGINE_IMAGE": emulator_image(),
        "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
        "ENGINE_ENV": '{"EMULATOR_PREBUFFER_S": "0"}',
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        "PORT_RECHECK_S": "1",
        "ENGINE_GRACE_PERIOD_S": "600",
        "HEALTH_CHECK_INTERVAL_S": "1",
        "DOCKER_TIMEOUT_S": str(DOCKER_TIMEOUT_S),
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "1",  # one failure counted would open it
        "CIRCUIT_BREAKER_RECOVERY_TIMEOUT_S": "60",
        **extra,
    }


@asynccontextmanager
async def gateway(env: dict[str, str], log: Path) -> AsyncIterator[GatewayProcess]:
    """A gateway process that answers HTTP (not necessarily ready: the faults may hold it)."""
    process = GatewayProcess(env, log)
    process.start()
    try:
        await wait_until(lambda: _answers(process), timeout_s=30)
        yield process
    finally:
        process.stop()


def _answers(process: GatewayProcess) -> bool:
    assert process.proc is not None
    assert process.proc.poll() is None, log_tail(process)
    return "gateway_listening" in process.event_names()


def log_tail(process: GatewayProcess) -> str:
    return process.log_path.read_text(errors="replace")[-3000:]


async def fleet_status(process: GatewayProcess) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(process.url + "/orchestrator/status") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return body


async def provisioning_failures(process: GatewayProcess) -> float:
    async with aiohttp.ClientSession() as http, http.get(process.url + "/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^acestream_gateway_provisioning_failures_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def ports_of(instance: str) -> list[int]:
    return sorted(int(c["Config"]["Labels"][PORT_LABEL]) for c in containers_of(instance))


def running(instance: str) -> list[dict[str, Any]]:
    return [c for c in containers_of(instance) if c["State"]["Running"]]


async def ready_engines(process: GatewayProcess) -> int:
    status = await fleet_status(process)
    return int(status["engines"]["healthy"])


async def wait_for_ready_engines(process: GatewayProcess, count: int, timeout_s: float) -> None:
    async def enough() -> bool:
        return await ready_engines(process) >= count

    await wait_until(enough, timeout_s=timeout_s, interval_s=0.3)


def name_problems(process: GatewayProcess) -> list[dict[str, Any]]:
    """Log lines that say a create ran into a container name (or its port) already in use."""
    return [
        e
        for e in process.events()
        if e.get("event") in ("engine_name_taken", "engine_port_unusable")
        or "already in use" in str(e.get("reason", ""))
    ]


# --- a create with no answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_fault",
    [
        pytest.param(lambda: delay_answer("POST", "/containers/create", DOCKER_TIMEOUT_S + 3, 1),
                     id="answered after the timeout, Docker made it"),
        pytest.param(lambda: drop("POST", "/containers/create", times=1),
                     id="lost on its way, Docker made nothing"),
    ],
)  # fmt: skip
async def test_a_create_without_an_answer_leaves_no_port_leak_and_no_name_conflict(
    instance: str, proxy: DockerProxy, tmp_path: Path, make_fault: Callable[[], Fault]
) -> None:
    """The create got no answer within DOCKER_TIMEOUT_S, whether Docker made the container or
    not: the next listings adopt the container, remove it or free its port, and the fleet fills
    every port of a range exactly MAX_ACTIVE_REPLICAS long (a port leaked either way would leave
    it short, or cause a name conflict)."""
    late = proxy.inject(make_fault())  # a fault of its own: it counts this test's matches
    lo, hi = free_port_range(2)
    env = gateway_env(instance, proxy, (lo, hi), MIN_REPLICAS="2", MAX_ACTIVE_REPLICAS="2")
    async with gateway(env, tmp_path / "gateway.log") as process:
        await wait_until(lambda: late.matched == 1, timeout_s=30)
        await wait_for_ready_engines(process, 2, timeout_s=60)
        assert len(running(instance)) == 2
        assert ports_of(instance) == [lo, hi], "each port held by exactly one container"
        status = await fleet_status(process)
        assert status["provisioning"]["circuit_breaker_state"] == "closed"
        assert await provisioning_failures(process) == 0, "no answer is no engine failure"
        assert name_problems(process) == [], "the next create never ran into the made container"
        assert process.errors() == []


# --- a refused inspect while a container is in the way --------------------------------------------


async def test_a_refused_inspect_beside_a_name_conflict_gives_the_port_back_and_the_breaker_works(
    instance: str, proxy: DockerProxy, tmp_path: Path
) -> None:
    """Another program's container has the name of the first port's engine; Docker answers the
    gateway's inspect of it with a 500. The port is given back (an engine gets it once the name is
    free) and the breaker stays closed and usable."""
    lo, hi = free_port_range(3)
    squatter = f"acestream-engine-{instance}-{lo}"
    docker_create = ["docker", "create", "--name", squatter, emulator_image()]
    subprocess.run(docker_create, check=True, capture_output=True, timeout=60)
    try:
        await refused_inspect(instance, proxy, tmp_path, squatter, (lo, hi))
    finally:
        subprocess.run(["docker", "rm", "-f", squatter], capture_output=True, check=False)


async def refused_inspect(
    instance: str, proxy: DockerProxy, tmp_path: Path, squatter: str, ports: tuple[int, int]
) -> None:
    lo, hi = ports
    refused = proxy.inject(answer("GET", f"/containers/{squatter}/json", 500, "boom", times=1))
    env = gateway_env(instance, proxy, (lo, hi), MIN_REPLICAS="2", MAX_ACTIVE_REPLICAS="2")
    async with gateway(env, tmp_path / "gateway.log") as process:
        await wait_for_ready_engines(process, 2, timeout_s=60)
        assert refused.matched == 1
        status = await fleet_status(process)
        assert status["provisioning"]["circuit_breaker_state"] == "closed"
        assert (
            status["provisioning"]["can_provision"]
            or status["provisioning"]["blocked_reason_details"]["code"] == "max_capacity"
        ), status["provisioning"]
        assert ports_of(instance) == [lo + 1, hi]

        # The name is free again: the port of the refused inspect was given back, so an engine
        # removed now is replaced on it.
        subprocess.run(["docker", "rm", "-f", squatter], check=True, capture_output=True)
        gone = next(c for c in running(instance) if c["Config"]["Labels"][PORT_LABEL] == str(hi))
        async with (
            aiohttp.ClientSession() as http,
            http.delete(f"{process.url}/engines/{gone['Id']}") as removed,
        ):
            assert removed.status == 200, await removed.text()
        await wait_until(lambda: ports_of(instance) == [lo, lo + 1], timeout_s=60)
        await wait_for_ready_engines(process, 2, timeout_s=60)
        assert await provisioning_failures(process) == 0
        assert process.errors() == []


# --- a slow Docker --------------------------------------------------------------------------------


async def test_a_slow_docker_blocks_provisioning_as_docker_unavailable_and_never_opens_the_breaker(
    instance: str, proxy: DockerProxy, tmp_path: Path
) -> None:
    lo, hi = free_port_range(4)
    env = gateway_env(instance, proxy, (lo, hi), MIN_REPLICAS="2", MAX_ACTIVE_REPLICAS="3")
    async with gateway(env, tmp_path / "gateway.log") as process:
        await wait_for_ready_engines(process, 2, timeout_s=60)
        engines = running(instance)
        # Docker lists at once but is slow to do anything: image inspects (or pulls), creates and
        # removals answer after DOCKER_TIMEOUT_S.
        slow = [
            proxy.inject(delay_request(method, path, DOCKER_TIMEOUT_S + 2))
            for method, path in (
                ("GET", "/images/.*"),
                ("POST", "/images/.*"),
                ("POST", "/containers/create"),
                ("DELETE", "/containers/.*"),
            )
        ]
        # Demand: an engine is drained, so the plan wants a new spare and removes the old one.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{process.url}/engines/{engines[0]['Id']}/drain") as drained,
        ):
            assert drained.status == 202, await drained.text()
        codes: set[str | None] = set()
        breakers: set[str] = set()
        for _ in range(40):  # 8 s: several passes, each timing out
            provisioning = (await fleet_status(process))["provisioning"]
            details = provisioning["blocked_reason_details"] or {}
            codes.add(details.get("code"))
            breakers.add(provisioning["circuit_breaker_state"])
            await asyncio.sleep(0.2)
        assert sum(f.matched for f in slow) > 0
        assert "docker_unavailable" in codes, codes
        assert not codes & {"circuit_breaker", "image_unavailable"}, codes
        assert breakers == {"closed"}
        assert await provisioning_failures(process) == 0

        for fault in slow:
            proxy.heal(fault)
        await wait_for_ready_engines(process, 2, timeout_s=60)
        drained_id = engines[0]["Id"]
        await wait_until(lambda: drained_id not in {c["Id"] for c in running(instance)}, 30)
        status = await fleet_status(process)
        assert status["provisioning"]["circuit_breaker_state"] == "closed"
        assert process.errors() == []


# --- removing a starting engine -------------------------------------------------------------------


async def test_removing_a_starting_engine_is_no_provisioning_failure(
    instance: str, proxy: DockerProxy, tmp_path: Path
) -> None:
    lo, hi = free_port_range(3)
    env = gateway_env(
        instance,
        proxy,
        (lo, hi),
        MIN_REPLICAS="1",
        MAX_ACTIVE_REPLICAS="2",
        # Engines answer their API only after a while: they stay STARTING long enough to remove.
        ENGINE_ENV='{"EMULATOR_PREBUFFER_S": "0", "EMULATOR_API_DELAY_S": "5"}',
        ENGINE_API_TIMEOUT_S="1",
        ENGINE_STARTUP_TIMEOUT_S="120",
    )
    async with (
        gateway(env, tmp_path / "gateway.log") as process,
        aiohttp.ClientSession() as http,
    ):

        async def starting() -> list[dict[str, Any]]:
            async with http.get(process.url + "/engines") as resp:
                listed: list[dict[str, Any]] = await resp.json()
            return [e for e in listed if e["state"] == "starting"]

        first: list[dict[str, Any]] = []
        for _ in range(100):
            first = await starting()
            if first:
                break
            await asyncio.sleep(0.2)
        assert first, log_tail(process)
        async with http.delete(f"{process.url}/engines/{first[0]['id']}") as removed:
            assert removed.status == 200, await removed.text()
        # The plan starts its replacement; the removal counted against nothing.
        for _ in range(100):
            if [e for e in await starting() if e["id"] != first[0]["id"]]:
                break
            await asyncio.sleep(0.2)
        status = await fleet_status(process)
        assert status["provisioning"]["circuit_breaker_state"] == "closed", status
        assert await provisioning_failures(process) == 0
        assert first[0]["id"] not in {c["Id"] for c in containers_of(instance)}
        assert process.errors() == []
