"""Players who leave while their channel starts, seen from outside: ``acestream-gateway serve``
with ENGINE_URLS against engine emulators running as local processes.

A player that hangs up before its first byte gives its place back at once: no claim stays held
and no engine session is made for nobody (the session already being made is stopped as soon as it
exists, with no linger); and hanging up is zapping, an info line, never an error."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.local import FAST, OTHER, Emulator
from tests.integration.test_static_fleet_local import gateway_env
from tests.support import CHANNEL, GatewayProcess, running_gateway, wait_until


async def status(gateway: GatewayProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/orchestrator/status") as resp:
            body: dict[str, Any] = await resp.json()
            return body


async def claims(gateway: GatewayProcess) -> int:
    return int((await status(gateway))["capacity"]["used"])


async def sessions_on(*engines: Emulator) -> int:
    return sum([int((await e.stats())["sessions_active"]) for e in engines])


async def hang_up_after(gateway: GatewayProcess, channel: str, delay_s: float, reset: bool) -> None:
    """Ask for ``channel``, then hang up after ``delay_s`` before any answer: a reset (RST) or
    a plain close (FIN)."""
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    request = f"GET /ace/getstream?id={channel} HTTP/1.1\r\nHost: gateway\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    await asyncio.sleep(delay_s)
    sock: socket.socket = writer.get_extra_info("socket")
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def test_a_player_that_resets_during_the_start_answer_leaves_no_claim_and_no_session(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST, json_delay_s="0.5")
    await engine.wait_up()
    env = gateway_env(engine, STREAM_LINGER_S="5")
    async with running_gateway(env, tmp_path / "gateway.log") as gateway:
        await hang_up_after(gateway, CHANNEL, 0.2, reset=True)
        left_at = time.monotonic()
        # The start answer comes 0.3 s later: the session it made is stopped at once, and only
        # then is the claim given back (never before: that would orphan the session).
        await asyncio.sleep(max(0.0, left_at + 1.0 - time.monotonic()))
        assert await claims(gateway) == 0
        assert await sessions_on(engine) == 0
        assert (await engine.stats())["sessions_started"] <= 1
        assert "player_left" in gateway.event_names()
        assert "channel_idle" not in gateway.event_names()  # no linger for nobody
        # A player who comes back finds the channel as usual.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.url}/ace/getstream?id={CHANNEL}") as resp:
                assert resp.status == 200
                assert len(await resp.content.readexactly(188 * 100)) == 188 * 100
        assert gateway.errors() == []


async def test_a_channel_all_of_whose_players_left_during_its_start_answer_is_stopped_at_once(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST, json_delay_s="0.5")
    await engine.wait_up()
    env = gateway_env(engine, STREAM_LINGER_S="5")
    async with running_gateway(env, tmp_path / "gateway.log") as gateway:
        # Three players of one channel hang up while its start is asked of the engine; the
        # channel is not started again for anybody, and its one session is stopped at once.
        await asyncio.gather(
            *(hang_up_after(gateway, CHANNEL, d, reset=False) for d in (0.05, 0.1, 0.2))
        )
        await wait_until(lambda: claims_and_sessions_gone(gateway, engine), timeout_s=1.5)
        assert (await engine.stats())["sessions_started"] <= 1
        assert gateway.errors() == []


async def claims_and_sessions_gone(gateway: GatewayProcess, engine: Emulator) -> bool:
    return await claims(gateway) == 0 and await sessions_on(engine) == 0


async def test_players_hanging_up_while_their_channel_starts_log_no_error(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**{**FAST, "prebuffer_s": "0.4"}, json_delay_s="0.3")
    await engine.wait_up()
    env = gateway_env(engine, MAX_STREAMS_PER_ENGINE="8")
    async with running_gateway(env, tmp_path / "gateway.log") as gateway:
        # Hang-ups all through the start: before the engine answered, while the answer comes,
        # while the engine prebuffers, some by reset and some by close.
        delays = [0.05 * i for i in range(1, 16)]
        await asyncio.gather(
            *(hang_up_after(gateway, CHANNEL, d, reset=i % 2 == 0) for i, d in enumerate(delays))
        )
        await wait_until(lambda: claims_and_sessions_gone(gateway, engine), timeout_s=5)
        lefts = [e for e in gateway.events() if e.get("event") == "player_left"]
        assert len(lefts) == len(delays)
        assert all(e["level"] == "info" for e in lefts)
        assert gateway.errors() == []


async def test_a_new_channel_beyond_the_waiting_bound_gets_503_and_a_join_does_not(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST, json_delay_s="2")
    await engine.wait_up()
    env = gateway_env(engine, MAX_WAITING_CHANNELS="1", MAX_STREAMS_PER_ENGINE="4")
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        first = asyncio.create_task(http.get(f"{gateway.url}/ace/getstream?id={CHANNEL}"))
        await wait_until(lambda: gateway_logged(gateway, "channel_opened"), timeout_s=2)
        async with http.get(f"{gateway.url}/ace/getstream?id={OTHER}") as refused:
            assert refused.status == 503
            assert int(refused.headers["Retry-After"]) >= 1
            body = await refused.json()
            assert body["reason"] == "too_many_starting"
        # A second player of the starting channel joins it and plays.
        async with http.get(f"{gateway.url}/ace/getstream?id={CHANNEL}") as joined:
            assert joined.status == 200
            await joined.content.readexactly(188 * 10)
        async with await first as resp:
            assert resp.status == 200


def gateway_logged(gateway: GatewayProcess, event: str) -> bool:
    return event in gateway.event_names()
