"""Test equipment shared by the suites: real tools, real processes, real Docker, no mocks.

Under CI a missing tool or Docker is a failure, never a skip: ``need`` decides which.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from acestream_gateway.app import create_app
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.fleet.swarm_nodes import NodeStatus
from acestream_gateway.ops.status import FleetFacts
from acestream_gateway.settings import Settings, describe_errors
from acestream_gateway.streaming.mpegts import PACKET_SIZE, is_random_access

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "dd1e67078381739d14beca697356ab76d49d1a2d"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(condition: bool, what: str) -> None:
    """Skip a test whose equipment is missing on a developer machine; fail it under CI."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{what} is required under CI")
    pytest.skip(f"{what} is not available")


def need_tool(command: str, package: str) -> str:
    """The path of ``command`` (from the Debian ``package``), or a skip / a CI failure."""
    path = shutil.which(command)
    need(path is not None, f"{command} (Debian package {package})")
    assert path is not None
    return path


def need_ffprobe() -> str:
    return need_tool("ffprobe", "ffmpeg")


def need_ffmpeg() -> str:
    return need_tool("ffmpeg", "ffmpeg")


def need_promtool() -> str:
    return need_tool("promtool", "prometheus")


def need_docker_compose() -> str:
    return need_tool("docker-compose", "docker-compose")


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def need_docker() -> None:
    need(docker_answers(), "a running Docker engine (scripts/ensure-docker)")


def emulator_image() -> str:
    """The engine emulator image: from EMULATOR_IMAGE, else built (or found) by its script."""
    return _image("EMULATOR_IMAGE", "emulator-image")


def gateway_image() -> str:
    """The gateway's own image: from GATEWAY_IMAGE, else built (or found) by its script."""
    return _image("GATEWAY_IMAGE", "gateway-image")


def vpn_standin_image() -> str:
    """The stand-in VPN (Gluetun look-alike) image: from VPN_STANDIN_IMAGE, else built (or
    found) by its script."""
    return _image("VPN_STANDIN_IMAGE", "vpn-standin-image")


def standin_image(preset: str) -> str:
    """The stand-in of the engine image an ENGINE_PRESET is for (deploy/standins/<preset>): from
    STANDIN_IMAGES (``preset=image`` words), else built (or found) by scripts/standin-images."""
    images = _standin_images(os.environ.get("STANDIN_IMAGES", ""))
    need(preset in images, f"the stand-in image of ENGINE_PRESET={preset}")
    return images[preset]


@functools.cache
def _standin_images(listed: str) -> dict[str, str]:
    if not listed.strip():
        result = subprocess.run(
            [str(ROOT / "scripts" / "standin-images")],
            env={**os.environ, "EMULATOR_IMAGE": emulator_image()},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        need(result.returncode == 0, f"scripts/standin-images ({result.stderr.strip()[-500:]})")
        listed = result.stdout
    pairs = (word.split("=", 1) for word in listed.split() if "=" in word)
    return dict(pairs)


def _image(variable: str, script: str) -> str:
    image = os.environ.get(variable, "").strip()
    if image:
        return image
    result = subprocess.run(
        [str(ROOT / "scripts" / script)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    need(result.returncode == 0, f"the image of scripts/{script} ({result.stderr.strip()[-500:]})")
    return result.stdout.strip().splitlines()[-1]


@asynccontextmanager
async def gateway_server(settings: Settings) -> AsyncIterator[TestServer]:
    """The gateway in-process, its fleet built from ``settings``, serving on 127.0.0.1."""
    server = TestServer(create_app(settings), host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_range(size: int) -> tuple[int, int]:
    """A run of ``size`` ports that are free now, from a spread-out random start."""
    import random

    for _ in range(100):
        lo = random.randrange(20000, 60000 - size)
        if all(_is_free(p) for p in range(lo, lo + size)):
            return lo, lo + size - 1
    raise RuntimeError("no free port range")


def emulator_fleet_settings(instance: str, ports: int, **values: Any) -> Settings:
    """Settings of a Docker fleet of engine emulators (the emulator image takes the engine's
    command line itself) on a run of ``ports`` free host ports; ``values`` set the rest."""
    lo, hi = free_port_range(ports)
    return Settings(
        **{
            "gateway_instance_name": instance,
            "engine_image": emulator_image(),
            "engine_preset": "custom",
            "engine_args": "--client-console --http-port {port} --bind-all",
            "port_range_host": f"{lo}-{hi}",
            **values,
        }
    )


def numbered_engine(n: int, state: EngineState = EngineState.READY) -> Engine:
    """Engine ``n`` of a pool test: ``e<n>``, named ``engine-<n>``, at 127.0.0.1:``19000 + n``."""
    return Engine(
        id=f"e{n}", name=f"engine-{n}", address=EngineAddress("127.0.0.1", 19000 + n), state=state
    )


def pool_with(*engines: Engine, max_streams: int, wait: float, max_engines: int = 20) -> EnginePool:
    """A pool holding ``engines``: ``max_streams`` per engine, ``wait`` seconds for a new one."""
    pool = EnginePool(
        max_streams_per_engine=max_streams, max_engines=max_engines, provision_wait_s=wait
    )
    for e in engines:
        pool.add(e)
    return pool


def emulator_gateway_env(
    instance: str, ports: int, emulator: Mapping[str, str], **env: str
) -> dict[str, str]:
    """The environment of a gateway process (``running_gateway``) on a free port of 127.0.0.1,
    with a Docker fleet of engine emulators (the emulator image takes the engine's command line
    itself) on a run of ``ports`` free host ports; ``emulator`` is each emulator's own environment
    (``ENGINE_ENV``), ``env`` the gateway's other settings."""
    lo, hi = free_port_range(ports)
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_INSTANCE_NAME": instance,
        "ENGINE_IMAGE": emulator_image(),
        "ENGINE_PRESET": "custom",
        "ENGINE_ARGS": "--client-console --http-port {port} --bind-all",
        "ENGINE_ENV": json.dumps(dict(emulator)),
        "PORT_RANGE_HOST": f"{lo}-{hi}",
        **env,
    }


@dataclass(frozen=True)
class Endpoint:
    """One Docker endpoint as the fleet reports it to the status and the metrics."""

    name: str
    reachable: bool
    down_reason: str | None
    blocked: str | None
    engines: int
    max_engines: int
    room: int
    ports: str
    ports_held: int
    nodes: tuple[NodeStatus, ...] = ()  # a Swarm's nodes


def endpoints_fleet(*endpoints: Endpoint) -> FleetFacts:
    """What a fleet of these Docker endpoints tells the status and the metrics (no breaker, no
    VPN)."""
    return FleetFacts(endpoints=endpoints)


def settings_errors(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    """The one-line errors that loading the settings from ``env`` gives."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    return describe_errors(caught.value)


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def containers_of(instance: str) -> list[dict[str, Any]]:
    """Inspect data of every container (any state) labelled for a gateway instance."""
    ids = subprocess.run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            "label=acestream-gateway.managed=true",
            "--filter",
            f"label=acestream-gateway.instance={instance}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    if not ids:
        return []
    # A container may go between the listing and the inspection (the gateway removes dead ones):
    # inspect prints those it still finds and fails for the others.
    result = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, timeout=60, check=False
    )
    data: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return data


def remove_containers_of(instance: str) -> None:
    ids = [c["Id"] for c in containers_of(instance)]
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120, check=False)


class GatewayProcess:
    """``acestream-gateway serve`` in a subprocess, with its log kept for assertions."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = {**os.environ, "LOG_FORMAT": "json", **env}
        self.port = int(self.env["GATEWAY_PORT"])
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "acestream_gateway", "serve"],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=ROOT,
        )
        log.close()

    def stop(self, timeout_s: float = 20, signals: tuple[int, ...] = (signal.SIGTERM,)) -> float:
        """Send ``signals`` back to back, then wait; returns how long the shutdown took."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            for signum in signals:
                self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return time.monotonic() - started

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("level") in ("error", "critical")]

    def event_names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events()]

    async def wait_ready(self, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
                try:
                    async with http.get(self.url + "/ready") as resp:
                        body: dict[str, Any] = await resp.json()
                        # Ready to serve, and an engine takes a channel at once (not only once
                        # the fleet grew): what the tests start from.
                        if resp.status == 200 and body["can_place_now"]:
                            return body
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"gateway not ready: {self.log_path.read_text()[-3000:]}")


@asynccontextmanager
async def running_gateway(env: Mapping[str, str], log_path: Path) -> AsyncIterator[GatewayProcess]:
    """A gateway process that is ready to serve, stopped when the block ends."""
    gateway = GatewayProcess(env, log_path)
    gateway.start()
    try:
        await gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


async def ffprobe_streams(url: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """What ffprobe, a real player toolchain, finds in a stream URL."""
    proc = await asyncio.create_subprocess_exec(
        need_ffprobe(),
        "-v",
        "error",
        "-show_streams",
        "-show_format",
        "-of",
        "json",
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode(errors="replace")
    data = json.loads(out)
    assert data["format"]["format_name"] == "mpegts", data
    streams: list[dict[str, Any]] = data["streams"]
    return streams


async def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


class Player:
    """One player reading a stream URL in the background for as long as a test wants, noting
    when each piece arrived; its connection breaking ends it (``ended``), never the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.data = bytearray()
        self.status = 0
        self.arrivals: list[tuple[float, int]] = []  # (time, total bytes so far)
        self.ended = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async with aiohttp.ClientSession() as http, http.get(self.url) as resp:
                self.status = resp.status
                async for chunk in resp.content.iter_any():
                    self.data.extend(chunk)
                    self.arrivals.append((time.monotonic(), len(self.data)))
        except aiohttp.ClientError:
            pass
        finally:
            self.ended.set()

    async def receives(self, size: int, timeout_s: float = 20) -> None:
        """Wait until ``size`` more bytes than now have arrived."""
        target = len(self.data) + size
        await wait_until(lambda: len(self.data) >= target or self.ended.is_set(), timeout_s, 0.05)
        assert len(self.data) >= target, f"the stream ended early ({len(self.data)} bytes)"
        assert self.status == 200

    def first_real_data_after(self, moment: float) -> float | None:
        """When the first TS packet that is not keep-alive (PID 0x1FFF) arrived after
        ``moment``."""
        previous = 0
        for at, total in self.arrivals:
            if at > moment:
                chunk = self.data[previous:total]
                for i in range(0, len(chunk) - 187, 188):
                    if (chunk[i + 1] & 0x1F) << 8 | chunk[i + 2] != 0x1FFF:
                        return at
            previous = total
        return None

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def pid_of(packet: bytes | bytearray) -> int:
    return (packet[1] & 0x1F) << 8 | packet[2]


def assert_resumes_cleanly(data: bytes, splices: list[int]) -> int:
    """Whole packets throughout, and at every splice (a broadcast offset, the player having read
    the broadcast from offset 0) the stream resumes with the PAT and then a keyframe; returns
    the number of splices checked."""
    packets = [
        data[i : i + PACKET_SIZE] for i in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE)
    ]
    assert all(p[0] == 0x47 for p in packets), "the stream stays on packet boundaries"
    checked = 0
    for offset in splices:
        if offset < 0 or offset + 8 * PACKET_SIZE > len(data):
            continue
        assert offset % PACKET_SIZE == 0
        first = offset // PACKET_SIZE
        assert pid_of(packets[first]) == 0, "the new session starts with the PAT"
        assert any(is_random_access(p) for p in packets[first : first + 8]), "then a keyframe"
        checked += 1
    return checked
