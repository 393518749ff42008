"""Connections that never become requests are bounded, against a gateway process with an engine
emulator as a local process: silent and trickling connections are closed within the header bound
while a player keeps playing, file descriptors come back to their level, idle kept-alive
connections are closed after the keep-alive timeout, and a client past its connection cap gets a
JSON 429 and a close."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from tests.integration.local import FAST, Emulator
from tests.support import CHANNEL, GatewayProcess, Player, free_port, running_gateway, wait_until

HEADER_BOUND_S = 3.0
SLACK_S = 2.5  # a loaded machine's scheduling, on top of the bound
REQUEST_LINE = b"GET /health HTTP/1.1\r\nHost: gateway\r\n"


@asynccontextmanager
async def gateway_with(
    engine: Emulator, tmp_path: Path, **env: str
) -> AsyncIterator[GatewayProcess]:
    await engine.wait_up()
    values = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "ENGINE_URLS": engine.url,
        "STREAM_LINGER_S": "0.2",
        **env,
    }
    async with running_gateway(values, tmp_path / "gateway.log") as gateway:
        yield gateway


def open_fds(gateway: GatewayProcess) -> int:
    assert gateway.proc is not None
    return len(os.listdir(f"/proc/{gateway.proc.pid}/fd"))


async def connect(port: int) -> tuple[float, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return time.monotonic(), reader, writer


async def closed_after(
    opened: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bool
) -> float:
    """Seconds from ``opened`` until the gateway closes the connection; a trickling one sends
    its request line one byte every 2 s meanwhile (never completing its headers), a silent one
    nothing."""

    async def send_slowly() -> None:
        for byte in REQUEST_LINE:
            writer.write(bytes([byte]))
            await asyncio.sleep(2)

    sender = asyncio.create_task(send_slowly()) if trickle else None
    try:
        while await reader.read(1024):
            pass
    except ConnectionError:
        pass
    finally:
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return time.monotonic() - opened


def longest_gap(player: Player, since: float) -> float:
    """The longest time the player went without data since ``since`` (until now)."""
    moments = [since, *(at for at, _ in player.arrivals if at > since), time.monotonic()]
    return max(b - a for a, b in itertools.pairwise(moments))


async def test_600_idle_and_slow_connections_close_within_the_header_bound_as_a_player_plays(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    env = {"CLIENT_HEADER_TIMEOUT_S": str(HEADER_BOUND_S), "MAX_CONNECTIONS_PER_CLIENT": "1000"}
    async with gateway_with(engine, tmp_path, **env) as gateway:
        player = Player(f"{gateway.url}/ace/getstream?id={CHANNEL}")
        try:
            await player.receives(188 * 500)
            fds_before = open_fds(gateway)
            started = time.monotonic()
            connections = [await connect(gateway.port) for _ in range(600)]
            await wait_until(lambda: open_fds(gateway) >= fds_before + 600, timeout_s=10)
            async with asyncio.timeout(HEADER_BOUND_S + SLACK_S + 10):
                lifetimes = await asyncio.gather(
                    *(
                        closed_after(*connection, trickle=n % 2 == 0)
                        for n, connection in enumerate(connections)
                    )
                )
            assert max(lifetimes) <= HEADER_BOUND_S + SLACK_S, sorted(lifetimes)[-5:]
            assert min(lifetimes) >= HEADER_BOUND_S - 0.5, "closed by the bound, not before"
            # The player's stream, long past the header bound, was never cut nor held up.
            assert not player.ended.is_set()
            assert time.monotonic() - started > HEADER_BOUND_S
            assert longest_gap(player, started) < 2.0
            await player.receives(188 * 100)
            await wait_until(lambda: open_fds(gateway) <= fds_before, timeout_s=10)
        finally:
            await player.close()


async def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout_not_a_stream(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    async with gateway_with(engine, tmp_path, KEEPALIVE_TIMEOUT_S="2") as gateway:
        player = Player(f"{gateway.url}/ace/getstream?id={CHANNEL}")
        try:
            await player.receives(188 * 100)
            await idle_connection_closes_after(gateway, 2)
            await player.receives(188 * 100)
            assert not player.ended.is_set(), "the stream outlived the keep-alive timeout"
        finally:
            await player.close()


async def idle_connection_closes_after(gateway: GatewayProcess, timeout_s: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(REQUEST_LINE + b"\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        idle_from = time.monotonic()
        async with asyncio.timeout(10):
            assert await reader.read() == b""
        assert timeout_s - 0.5 <= time.monotonic() - idle_from <= timeout_s + SLACK_S
    finally:
        writer.close()


async def request_on(port: int, source: str = "127.0.0.1") -> tuple[int, dict[str, object], bool]:
    """One request on a new connection: the status, the JSON body, and whether the gateway
    then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(REQUEST_LINE + b"\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = json.loads(await reader.readexactly(length))
        try:
            async with asyncio.timeout(1):
                closed = await reader.read(1) == b""
        except TimeoutError:
            closed = False
        return int(head.split()[1]), body, closed
    finally:
        writer.close()


async def test_a_client_past_its_connection_cap_gets_a_json_429_and_is_closed(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    async with gateway_with(engine, tmp_path, MAX_CONNECTIONS_PER_CLIENT="4") as gateway:
        held = [await asyncio.open_connection("127.0.0.1", gateway.port) for _ in range(3)]
        status, body, closed = await request_on(gateway.port)
        assert (status, closed) == (200, False), "the fourth is within the cap"
        held.append(await asyncio.open_connection("127.0.0.1", gateway.port))
        status, body, closed = await request_on(gateway.port)
        assert status == 429
        assert body["error"] == "too_many_connections"
        assert closed
        status, _, _ = await request_on(gateway.port, source="127.0.0.2")
        assert status == 200, "another client has its own count"
        _, writer = held.pop()
        writer.close()
        await asyncio.sleep(0.3)
        status, _, _ = await request_on(gateway.port)
        assert status == 200, "a connection that closed no longer counts"
        for _, writer in held:
            writer.close()
        assert "client_connections_capped" in gateway.event_names()
        assert gateway.errors() == []


async def test_what_the_http_parser_refuses_gets_a_json_400_and_no_error_line(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST)
    async with gateway_with(engine, tmp_path) as gateway:
        for head in [
            b"GET /ace/getstream?id=\xff HTTP/1.1\r\nHost: gateway\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: gateway\r\nHost: again\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: gateway\r\nBad Header\xff: x\r\n\r\n",
        ]:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(head)
            async with asyncio.timeout(10):
                answer = await reader.read()
            writer.close()
            top, _, body = answer.partition(b"\r\n\r\n")
            assert top.split()[1] == b"400", answer
            assert b"application/json" in top
            assert json.loads(body)["error"] == "bad_request"
        assert "request_malformed" in gateway.event_names()
        assert gateway.errors() == []
