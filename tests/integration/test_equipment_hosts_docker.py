"""The equipment for several Docker hosts and a Swarm, proved on its own: a second daemon that
speaks TLS and refuses strangers, whose engines live at an address of their own, that can go away
and come back with its containers, and leaves nothing behind; a single-node Swarm that runs an
engine as a service and reschedules its killed task."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from tests.equipment import host_traces
from tests.equipment.second_daemon import DockerDaemon, docker_daemon, need_daemon_equipment
from tests.equipment.swarm import Swarm, Task
from tests.equipment.tls_files import new_authority
from tests.support import emulator_image, free_port, wait_until

pytestmark = pytest.mark.docker

VERSION = "/webui/api/service?method=get_version"


async def engine_version(host: str, port: int) -> dict[str, Any] | None:
    """The emulator's version answer at ``host:port``, or None when nothing answers there."""
    timeout = aiohttp.ClientTimeout(total=3)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"http://{host}:{port}{VERSION}") as answer,
        ):
            data: dict[str, Any] = await answer.json(content_type=None)
            return data
    except (aiohttp.ClientError, TimeoutError):
        return None


async def answers(host: str, port: int) -> bool:
    version = await engine_version(host, port)
    return version is not None and version["result"]["version"] != ""


def run_emulator(daemon: DockerDaemon, port: int, *options: str) -> str:
    """An emulator container on ``daemon`` serving on ``port`` of the daemon's address (where
    the gateway publishes its engines' ports)."""
    return daemon.docker(
        "run", "-d", "--name", f"emulator-{uuid.uuid4().hex[:8]}",
        "-p", f"{daemon.engine_host}:{port}:{port}",
        *options, emulator_image(), "--client-console", "--http-port", str(port), "--bind-all",
    ).stdout.strip()  # fmt: skip


def docker_ids(*args: str) -> set[str]:
    result = subprocess.run(
        ["docker", *args, "ps", "-aq", "--no-trunc"], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


async def daemon_version(daemon: DockerDaemon, context: ssl.SSLContext) -> dict[str, Any]:
    host_port = daemon.tcp_url.removeprefix("tcp://")
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"https://{host_port}/version", ssl=context) as answer,
    ):
        assert answer.status == 200
        data: dict[str, Any] = await answer.json()
        return data


async def test_the_second_daemon_answers_over_tls_with_the_client_certificate(
    second_docker: DockerDaemon,
) -> None:
    version = await daemon_version(second_docker, second_docker.client_tls.ssl_context())
    assert version["Version"]
    cli = subprocess.run(
        ["docker", "-H", second_docker.tcp_url, *second_docker.client_tls.docker_args(), "info",
         "--format", "{{.Name}} {{.DockerRootDir}}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert str(second_docker.root) in cli.stdout, "the CLI over TLS reaches the second daemon"


async def test_aiodocker_reaches_the_second_daemon_over_tls_at_its_https_url(
    second_docker: DockerDaemon,
) -> None:
    context = second_docker.client_tls.ssl_context()
    async with aiodocker.Docker(url=second_docker.https_url, ssl_context=context) as docker:
        info = await docker.system.info()
        assert info["DockerRootDir"] == str(second_docker.root / "data")
    # The same with a tcp:// URL is plain HTTP, which the TLS listener refuses.
    async with aiodocker.Docker(url=second_docker.tcp_url, ssl_context=context) as docker:
        with pytest.raises(aiodocker.DockerError) as refused:
            await docker.system.info()
    assert refused.value.status == 400
    assert "HTTPS" in refused.value.message


async def test_a_client_certificate_of_another_ca_is_refused_with_a_tls_error(
    second_docker: DockerDaemon, tmp_path: Path
) -> None:
    stranger = new_authority(tmp_path, "other-ca").client("stranger")
    context = ssl.create_default_context(cafile=str(second_docker.client_tls.ca))
    context.load_cert_chain(str(stranger.cert), str(stranger.key))
    host, port = second_docker.tcp_url.removeprefix("tcp://").split(":")
    # Under TLS 1.3 the daemon judges the client's certificate after the client's handshake has
    # ended: its alert arrives on the first read (a client that has already sent a request may
    # see the connection reset instead, docs/TESTING.md).
    reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
    try:
        with pytest.raises(ssl.SSLError, match=r"(?i)certificate"):
            await asyncio.wait_for(reader.read(1), timeout=10)
    finally:
        writer.transport.abort()
    cli = subprocess.run(
        ["docker", "-H", second_docker.tcp_url, "--tlsverify",
         f"--tlscacert={second_docker.client_tls.ca}", f"--tlscert={stranger.cert}",
         f"--tlskey={stranger.key}", "version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode != 0
    assert "bad certificate" in cli.stderr


async def test_an_engine_there_is_reached_on_its_own_address_not_the_machines(
    second_docker: DockerDaemon, instance: str
) -> None:
    port = free_port()
    image = emulator_image()
    main = subprocess.run(
        ["docker", "run", "-d", "--label", "acestream-gateway.managed=true",
         "--label", f"acestream-gateway.instance={instance}", "-p", f"127.0.0.1:{port}:{port}",
         image, "--client-console", "--http-port", str(port), "--bind-all"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    second = run_emulator(second_docker, port)
    try:
        await wait_until(lambda: answers(second_docker.engine_host, port), timeout_s=30)
        await wait_until(lambda: answers("127.0.0.1", port), timeout_s=30)
        assert second not in docker_ids()
        assert main not in docker_ids("-H", second_docker.unix_url)
        address = second_docker.docker(
            "inspect", "-f", "{{.NetworkSettings.IPAddress}}", second
        ).stdout.strip()
        assert ipaddress.ip_address(address) in second_docker.namespace.subnets.bridge
        second_docker.docker("stop", "-t", "0", second)
        assert await engine_version(second_docker.engine_host, port) is None
        assert await answers("127.0.0.1", port), "the machine's engine is another one"
    finally:
        second_docker.docker("rm", "-f", second, check=False)


def test_a_container_on_the_machines_daemon_reaches_an_engine_on_the_second_host(
    second_docker: DockerDaemon, instance: str
) -> None:
    port = free_port()
    engine = run_emulator(second_docker, port)
    url = f"http://{second_docker.engine_host}:{port}{VERSION}"
    script = (
        "import time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        print(urllib.request.urlopen({url!r}, timeout=5).read().decode()); break\n"
        "    except OSError: time.sleep(0.2)\n"
    )
    try:
        seen = subprocess.run(
            ["docker", "run", "--rm", "--label", f"acestream-gateway.instance={instance}",
             "--entrypoint", "python3", emulator_image(), "-c", script],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        assert '"version"' in seen, "a gateway in its image reaches the second host's engines"
    finally:
        second_docker.docker("rm", "-f", engine, check=False)


@pytest.mark.parametrize("going", ["stop", "crash"])
async def test_a_host_that_goes_away_and_comes_back_keeps_its_containers(
    second_docker: DockerDaemon, going: str
) -> None:
    port = free_port()
    kept = run_emulator(second_docker, port, "--restart", "unless-stopped")
    try:
        await wait_until(lambda: answers(second_docker.engine_host, port), timeout_s=30)
        getattr(second_docker, going)()
        assert second_docker.docker("version", check=False, timeout=10).returncode != 0
        assert await engine_version(second_docker.engine_host, port) is None
        second_docker.start()
        assert kept in second_docker.docker("ps", "-q", "--no-trunc").stdout.split()
        await wait_until(lambda: answers(second_docker.engine_host, port), timeout_s=30)
    finally:
        if not second_docker.running:  # the host stays up for the session's other tests
            second_docker.start()
        second_docker.docker("rm", "-f", kept, check=False)


async def connect_error(host: str, port: int) -> OSError | None:
    """How a TCP connection to ``host:port`` fails within 2 s (None: it is made)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2)
    except OSError as error:
        return error
    writer.close()
    return None


def route_to(address: str) -> str:
    result = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("silent", "expected_errno"),
    [(True, None), (False, errno.EHOSTUNREACH)],
    ids=["silent", "no-route"],
)
async def test_a_disconnected_host_is_unreachable_and_never_routed_off_the_machine(
    second_docker: DockerDaemon, silent: bool, expected_errno: int | None
) -> None:
    port = free_port()
    engine = run_emulator(second_docker, port)
    try:
        await wait_until(lambda: answers(second_docker.engine_host, port), timeout_s=30)
        second_docker.disconnect(silent=silent)
        try:
            error = await connect_error(second_docker.engine_host, port)
            if silent:
                assert isinstance(error, TimeoutError), f"packets vanish, not {error!r}"
            else:
                assert error is not None
                assert error.errno == expected_errno, f"no route at once, not {error!r}"
            route = route_to(second_docker.engine_host)
            assert second_docker.namespace.host_if in route or "No route to host" in route, route
            running = second_docker.docker("inspect", "-f", "{{.State.Running}}", engine)
            assert running.stdout == "true\n", "the host goes on behind the cut"
        finally:
            second_docker.reconnect()
        await wait_until(lambda: answers(second_docker.engine_host, port), timeout_s=30)
    finally:
        second_docker.docker("rm", "-f", engine, check=False)


async def running_task(swarm: Swarm, service: str, other_than: str = "") -> Task:
    found: list[Task] = []

    def ready() -> bool:
        task = swarm.running_task(service)
        if task is None or task.container_id == other_than:
            return False
        found.append(task)
        return True

    await wait_until(ready, timeout_s=60, interval_s=0.5)
    return found[-1]


async def test_a_swarm_service_answers_on_its_labelled_node_and_a_killed_task_is_replaced(
    swarm_docker: Swarm,
) -> None:
    daemon, port, service = swarm_docker.daemon, free_port(), f"engine-{uuid.uuid4().hex[:8]}"
    swarm_docker.label_node("acestream", "true")
    daemon.docker(
        "service", "create", "-d", "--name", service, "--replicas", "1",
        "--constraint", "node.labels.acestream==true",
        "--publish", f"mode=host,target={port},published={port}", emulator_image(),
        "--client-console", "--http-port", str(port), "--bind-all",
    )  # fmt: skip
    try:
        first = await running_task(swarm_docker, service)
        assert first.node_address == swarm_docker.node_address
        assert first.ports == {port}
        await wait_until(lambda: answers(first.node_address, port), timeout_s=30)
        daemon.docker("kill", first.container_id)
        second = await running_task(swarm_docker, service, other_than=first.container_id)
        assert second.id != first.id, "Swarm runs a new task, not the old container again"
        assert second.ports == {port}
        await wait_until(lambda: answers(second.node_address, port), timeout_s=30)
    finally:
        daemon.docker("service", "rm", service, check=False)


def test_a_tests_cleanup_removes_only_its_own_services_and_containers(
    swarm_docker: Swarm, instance: str
) -> None:
    daemon, label = swarm_docker.daemon, f"acestream-gateway.instance={instance}"
    image = emulator_image()
    ours = daemon.docker("create", "--label", label, image).stdout.strip()
    other = daemon.docker("create", "--label", f"{label}-other", image).stdout.strip()
    service = daemon.docker(
        "service", "create", "-d", "--label", label, "--replicas", "0", image
    ).stdout.strip()
    try:
        daemon.remove_labelled(label)
        left = daemon.docker("ps", "-aq", "--no-trunc").stdout.split()
        assert ours not in left
        assert other in left
        assert daemon.docker("service", "inspect", service, check=False).returncode != 0
    finally:
        daemon.docker("rm", "-f", other, check=False)


async def test_a_removed_daemon_leaves_nothing_on_the_machine() -> None:
    need_daemon_equipment()
    port = free_port()
    with docker_daemon(images=[emulator_image()]) as daemon:
        run_emulator(daemon, port, "--restart", "always")
        await wait_until(lambda: answers(daemon.engine_host, port), timeout_s=30)
        during = daemon.leftovers()
        assert any(item.startswith("process ") for item in during)
        assert any(item.startswith("network namespace ") for item in during)
        assert any(item.startswith("cgroup ") for item in during)
        assert any(item.startswith("route unreachable ") for item in during)
    assert daemon.leftovers() == []
    assert not daemon.root.exists()


async def test_equipment_of_a_killed_run_is_erased_when_the_next_one_starts() -> None:
    need_daemon_equipment()
    port = free_port()
    with docker_daemon(images=[emulator_image()]) as daemon:
        run_emulator(daemon, port, "--restart", "always")
        await wait_until(lambda: answers(daemon.engine_host, port), timeout_s=30)
        assert daemon.name not in host_traces.sweep_abandoned(daemon.root.parent)
        assert await answers(daemon.engine_host, port), "a live run's equipment is left alone"
        gone = subprocess.Popen(["true"])
        gone.wait()
        (daemon.root / host_traces.OWNER).write_text(f"{gone.pid} 0")
        assert daemon.name in host_traces.sweep_abandoned(daemon.root.parent)
        assert daemon.leftovers() == []
        assert await engine_version(daemon.engine_host, port) is None
