"""The gateway's Gluetun client against the stand-in control server in-process: newer and older
Gluetun routes, a tunnel that goes down, a forwarded port, and an API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.test_utils import TestServer

from acestream_gateway.fleet.gluetun import GluetunClient
from acestream_gateway.fleet.vpn import Tunnel
from tests.equipment.gluetun_standin import Gluetun, control_app


@asynccontextmanager
async def control_server(
    **env: str,
) -> AsyncIterator[tuple[Gluetun, Callable[..., GluetunClient], str]]:
    state = Gluetun(env)
    server = TestServer(control_app(state), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:

        def client(api_key: str | None = None) -> GluetunClient:
            return GluetunClient(http, timeout_s=2, api_key=api_key)

        try:
            yield state, client, f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()


async def test_a_running_tunnel_and_its_forwarded_port_are_read() -> None:
    async with control_server(STANDIN_FORWARDED_PORT="5914") as (_, client, url):
        assert await client().tunnel(url) == Tunnel("running", 5914)


async def test_older_gluetun_is_read_through_its_openvpn_routes() -> None:
    async with control_server(STANDIN_LEGACY_ROUTES="1", STANDIN_FORWARDED_PORT="5914") as (
        state,
        client,
        url,
    ):
        assert await client().tunnel(url) == Tunnel("running", 5914)
        state.status = "stopped"
        assert await client().tunnel(url) == Tunnel("stopped", None)


async def test_a_stopped_tunnel_forwards_nothing() -> None:
    async with control_server(STANDIN_FORWARDED_PORT="5914") as (state, client, url):
        state.status = "stopped"
        assert await client().tunnel(url) == Tunnel("stopped", None)


async def test_a_control_server_that_refuses_us_says_nothing_and_the_key_opens_it() -> None:
    role = '{"auth": "apikey", "apikey": "s3cret"}'
    async with control_server(HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE=role) as (_, client, url):
        assert await client().tunnel(url) == Tunnel(None, None)
        assert await client("s3cret").tunnel(url) == Tunnel("running", None)


async def test_a_control_server_that_is_not_there_says_nothing() -> None:
    async with control_server() as (_, client, _url):
        assert await client().tunnel("http://127.0.0.1:9") == Tunnel(None, None)
