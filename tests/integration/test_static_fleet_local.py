"""``acestream-gateway serve`` with ENGINE_URLS against engine emulators running as local
processes: it plays without ever calling Docker, fails a channel over when its engine stops
answering, takes that engine back once it answers again, and refuses a channel at once when every
engine is busy."""

from __future__ import annotations

import json
import selectors
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.local import FAST, OTHER, Emulator
from tests.support import CHANNEL, GatewayProcess, Player, free_port, running_gateway, wait_until

THIRD = "fedcba9876543210fedcba9876543210fedcba98"
PACKET = 188


def gateway_env(*engines: Emulator, **extra: str) -> dict[str, str]:
    return {
        "ENGINE_URLS": ",".join(e.url for e in engines),
        "DOCKER_HOST": "unix:///nonexistent",  # any Docker call would fail, and say so in the log
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "HEALTH_CHECK_INTERVAL_S": "0.3",
        "HEALTH_PROBE_TIMEOUT_S": "0.5",
        "HEALTH_FAILURE_THRESHOLD": "2",
        "MAX_STREAMS_PER_ENGINE": "1",
        "FAILOVER_BACKOFF_S": "0.1",
        "STALL_TIMEOUT_S": "2",
        "KEEPALIVE_INTERVAL_S": "0.2",
        "STREAM_LINGER_S": "0.2",
        "PROVISION_WAIT_S": "30",
        **extra,
    }


def name_of(engine: Emulator) -> str:
    return f"static-127.0.0.1-{engine.port}"


def url_of(gateway: GatewayProcess, channel: str) -> str:
    return f"{gateway.url}/ace/getstream?id={channel}"


def logged(gateway: GatewayProcess, event: str, engine: Emulator) -> bool:
    return any(
        e.get("event") == event and e.get("engine") == name_of(engine) for e in gateway.events()
    )


async def readers_on(engine: Emulator) -> int:
    sessions: list[dict[str, Any]] = (await engine.stats())["sessions"]
    return sum(int(s["readers"]) for s in sessions)


async def ready(gateway: GatewayProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/ready") as resp:
        body: dict[str, Any] = await resp.json()
        return body


def accepts(port: int) -> bool:
    """Whether something accepts connections on a loopback port (its API may still be silent)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def started(emulators: Callable[..., Emulator], count: int) -> list[Emulator]:
    engines = [emulators(**FAST) for _ in range(count)]
    for engine in engines:
        await engine.wait_up()
    return engines


async def test_serve_with_engine_urls_plays_a_channel_and_never_calls_docker(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engines = await started(emulators, 2)
    async with running_gateway(gateway_env(*engines), tmp_path / "gateway.log") as gateway:
        assert (await ready(gateway))["engines"] == 2
        reader = Player(url_of(gateway, CHANNEL))
        try:
            await reader.receives(PACKET * 2000)
            assert reader.status == 200
            data = bytes(reader.data[: PACKET * 2000])
            assert set(data[::PACKET]) == {0x47}, "whole TS packets from the first byte"
        finally:
            await reader.close()
    events = gateway.events()
    (fleet,) = [e for e in events if e.get("event") == "static_fleet_started"]
    assert fleet["engines"] == [name_of(e) for e in engines]
    assert [e for e in events if "docker" in json.dumps(e).lower()] == []
    assert gateway.errors() == []


async def test_an_engine_that_stops_answering_hands_its_channel_over_and_comes_back(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engines = await started(emulators, 2)
    async with running_gateway(gateway_env(*engines), tmp_path / "gateway.log") as gateway:
        player = Player(url_of(gateway, CHANNEL))
        later: Player | None = None
        try:
            await player.receives(PACKET * 1000)
            loads = [await readers_on(e) for e in engines]
            carrying, other = engines if loads == [1, 0] else engines[::-1]
            await carrying.control(api_delay_s="never")
            await wait_until(lambda: logged(gateway, "engine_unhealthy", carrying), 10)
            await wait_until(lambda: readers_on(other), 15)
            await player.receives(PACKET * 2000)
            assert not player.ended.is_set(), "the player kept reading through the failover"

            await carrying.control(api_delay_s=0)
            await wait_until(lambda: logged(gateway, "engine_recovered", carrying), 10)
            assert (await ready(gateway))["engines"] == 2
            # Ready again: the other engine is full, so the next channel can only go there.
            later = Player(url_of(gateway, OTHER))
            await later.receives(PACKET * 500)
            assert await readers_on(carrying) == 1
            assert await readers_on(other) == 1
        finally:
            await player.close()
            if later is not None:
                await later.close()
    assert gateway.errors() == []


async def test_with_every_engine_busy_a_new_channel_gets_503_max_capacity_at_once(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engines = await started(emulators, 2)
    async with running_gateway(gateway_env(*engines), tmp_path / "gateway.log") as gateway:
        players = [Player(url_of(gateway, channel)) for channel in (CHANNEL, OTHER)]
        try:
            for player in players:
                await player.receives(PACKET * 500)
            began = time.monotonic()
            async with aiohttp.ClientSession() as http, http.get(url_of(gateway, THIRD)) as resp:
                body = await resp.json()
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) >= 1
            assert time.monotonic() - began < 2, "refused at once, not after PROVISION_WAIT_S"
            assert body["error"] == "no_capacity"
            assert body["reason"] == "max_capacity"
            assert "ENGINE_URLS" in body["detail"]
        finally:
            for player in players:
                await player.close()


async def test_an_engine_silent_at_start_is_unhealthy_and_ready_once_it_answers(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    (up,) = await started(emulators, 1)
    silent = emulators(**FAST, api_delay_s="never")
    await wait_until(lambda: accepts(silent.port), 20, 0.1)
    async with running_gateway(gateway_env(up, silent), tmp_path / "gateway.log") as gateway:
        await wait_until(lambda: logged(gateway, "engine_unreachable", silent), 10)
        assert (await ready(gateway))["engines"] == 1
        await silent.control(api_delay_s=0)
        await wait_until(lambda: logged(gateway, "engine_recovered", silent), 10)
        assert (await ready(gateway))["engines"] == 2


async def test_a_crowd_of_players_connecting_while_the_gateway_is_busy_is_queued_not_dropped(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    # While the gateway cannot accept (here: stopped), the kernel completes the handshakes of up
    # to its listen backlog; connections beyond it are left to retry a second later, a stream
    # starting late for those players.
    crowd = 600
    engines = await started(emulators, 1)
    async with running_gateway(gateway_env(*engines), tmp_path / "gateway.log") as gateway:
        assert gateway.proc is not None
        sockets = [socket.socket() for _ in range(crowd)]
        waiting = selectors.DefaultSelector()
        connected = 0
        gateway.proc.send_signal(signal.SIGSTOP)
        try:
            for sock in sockets:
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", gateway.port))
                waiting.register(sock, selectors.EVENT_WRITE, sock)
            deadline = time.monotonic() + 0.5
            while connected < crowd and (left := deadline - time.monotonic()) > 0:
                for key, _ in waiting.select(left):
                    waiting.unregister(key.fileobj)
                    done: socket.socket = key.data
                    connected += not done.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        finally:
            gateway.proc.send_signal(signal.SIGCONT)
            waiting.close()
            for sock in sockets:
                sock.close()
        assert connected == crowd
