"""The Docker API proxy of the test equipment: it forwards every request of a kept-alive
connection as it came, and injects exactly the faults it is told to, into exactly the calls they
match. A small aiohttp server on a Unix socket stands in for the daemon and records what reached
it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.equipment.docker_faults import answer, delay_answer, delay_request, drop
from tests.equipment.docker_proxy import DockerProxy, docker_proxy


class Daemon:
    """What reached the stand-in daemon: (method, path, body), when."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, bytes]] = []
        self.at: list[float] = []
        self.closing = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.got.append((request.method, request.path, body))
        self.at.append(time.monotonic())
        if request.path.endswith("/events"):
            return await self._events(request)
        if request.path.endswith("/attach/ws"):
            return await self._attach(request)
        return web.json_response({"Id": "c1", "echo": body.decode()}, status=201)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(message.data.upper())
        return socket

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"Action": "start"}\n')
        await self.closing.wait()  # an endless stream, as Docker's
        return response


@asynccontextmanager
async def stand_in(path: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", daemon.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    try:
        yield daemon
    finally:
        daemon.closing.set()
        await runner.cleanup()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with stand_in(tmp_path / "daemon.sock") as running:
        yield running


@pytest.fixture
def proxy(tmp_path: Path, daemon: Daemon) -> Iterator[DockerProxy]:
    with docker_proxy(tmp_path / "proxy.sock", str(tmp_path / "daemon.sock")) as running:
        yield running


@pytest.fixture
async def http(proxy: DockerProxy) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.UnixConnector(path=str(proxy.path))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


CREATE = "/v1.43/containers/create"


async def test_requests_of_one_kept_alive_connection_reach_docker_with_their_bodies(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"Image": '
        yield b'"engine"}'

    async with http.post(f"http://docker{CREATE}?name=a", data=b'{"Image": "x"}') as first:
        assert (first.status, (await first.json())["echo"]) == (201, '{"Image": "x"}')
    async with http.post(f"http://docker{CREATE}?name=b", data=chunks()) as second:
        assert (await second.json())["echo"] == '{"Image": "engine"}', "a chunked body"
    async with http.get("http://docker/v1.43/containers/c1/json") as third:
        assert third.status == 201
    assert [(m, p) for m, p, _ in daemon.got] == [
        ("POST", CREATE),
        ("POST", CREATE),
        ("GET", "/v1.43/containers/c1/json"),
    ]
    assert proxy.accepted == 1, "one connection carried the three requests"
    assert proxy.seen[0] == ("POST", "/containers/create"), "seen without the version prefix"
    assert proxy.calls("POST", "/containers/create") == 2


async def test_a_refusal_is_answered_with_dockers_error_body_and_never_reaches_docker(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    fault = proxy.inject(answer("POST", "/containers/create", 409, "name already in use", times=1))
    async with http.post(f"http://docker{CREATE}", data=b"{}") as refused:
        assert refused.status == 409
        assert await refused.json() == {"message": "name already in use"}
    async with http.post(f"http://docker{CREATE}", data=b"{}") as forwarded:
        assert forwarded.status == 201, "the fault applied to its first match only"
    async with http.get("http://docker/v1.43/containers/c1/json") as other:
        assert other.status == 201, "nor to another call"
    assert fault.matched == 1
    assert len(daemon.got) == 2


async def test_a_dropped_request_never_reaches_docker_and_is_never_answered(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    fault = proxy.inject(drop("DELETE", r"/containers/[^/]+"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await http.delete("http://docker/v1.43/containers/c1?force=1")
    assert daemon.got == []
    proxy.heal(fault)
    async with http.delete("http://docker/v1.43/containers/c1?force=1") as removed:
        assert removed.status == 201, "healed: forwarded again"
    assert len(daemon.got) == 1


async def test_a_held_answer_comes_after_the_client_gave_up_though_docker_did_the_work(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    proxy.inject(delay_answer("POST", "/containers/create", 2))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await http.post(f"http://docker{CREATE}", data=b"{}")
    assert [p for _, p, _ in daemon.got] == [CREATE], "Docker made it"


async def test_a_held_request_reaches_docker_late(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    proxy.inject(delay_request("GET", r"/containers/[^/]+/json", 0.4))
    sent = time.monotonic()
    async with http.get("http://docker/v1.43/containers/c1/json") as late:
        assert late.status == 201
    assert daemon.at[0] - sent >= 0.4


async def test_a_long_lived_answer_streams_through_while_other_faults_apply(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    proxy.inject(delay_answer("POST", "/containers/create", 30))  # another call's: no matter
    proxy.inject(answer("GET", "/version", 500, "broken"))
    async with http.get("http://docker/v1.43/events", timeout=aiohttp.ClientTimeout(5)) as events:
        assert await events.content.readline() == b'{"Action": "start"}\n'
    async with http.get("http://docker/version") as version:
        assert (version.status, await version.json()) == (500, {"message": "broken"})


async def test_an_upgraded_connection_is_forwarded_raw_both_ways(
    proxy: DockerProxy, daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    """After a request that upgrades the connection (attach), bytes are no longer HTTP."""
    proxy.inject(answer("GET", "/version", 500, "never reached"))  # parsing is off on this one
    async with (
        asyncio.timeout(5),
        http.ws_connect("http://docker/v1.43/containers/c1/attach/ws") as attached,
    ):
        for word in ("version", "GET /version HTTP/1.1"):
            await attached.send_str(word)
            assert (await attached.receive()).data == word.upper()
