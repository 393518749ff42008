"""Refused keys and tokens over HTTP (in-process gateway): every refusal is logged with who and
where but never the key, a client that keeps guessing gets 429 with Retry-After (also with the
right key, which is then not even compared) while other clients go on, and a header that is not
valid UTF-8 gets a JSON 400, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from acestream_gateway.ops.auth import REFUSALS_ALLOWED
from tests.integration.local import FAST, OTHER, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL

KEY = "s3cret-key"


async def call(
    url: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], Any]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(url, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), json.loads(await resp.text())


async def raw_request(port: int | None, head: bytes) -> tuple[int, str, bytes]:
    """Send ``head`` as it is (bytes no HTTP client would send); the status, type and body."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    top, _, body = answer.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


async def test_wrong_keys_are_logged_without_the_key_and_a_guessing_client_gets_429() -> None:
    async with gateway(settings(api_key=KEY)) as server:
        url = f"http://127.0.0.1:{server.port}/fleet/reconcile"
        with capture_logs() as logs:
            for n in range(REFUSALS_ALLOWED):
                status, _, body = await call(url, {"X-API-Key": f"guess{n}"})
                assert status == 403
            status, headers, body = await call(url, {"X-API-Key": KEY})
            assert status == 429, "the right key after many wrong ones is not even compared"
            assert body["error"] == "too_many_requests"
            assert 1 <= int(headers["Retry-After"]) <= 60
            status, _, _ = await call(url, {"X-API-Key": KEY}, source="127.0.0.2")
            assert status == 409, "another client is not held back (and gets past the key)"
        refused = [e for e in logs if e["event"] == "api_key_refused"]
        assert len(refused) == REFUSALS_ALLOWED
        assert all(e["peer"] == "127.0.0.1" for e in refused)
        assert all(e["endpoint"] == "POST /fleet/reconcile" for e in refused)
        assert refused[-1]["limited"] is True
        assert "guess" not in repr(logs)
        assert KEY not in repr(logs)


async def test_wrong_player_tokens_are_logged_and_a_guessing_player_gets_429(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(player_token="t0ps3cret"), engine) as server:
        with capture_logs() as logs:
            async with aiohttp.ClientSession() as http:
                for n in range(REFUSALS_ALLOWED):
                    async with http.get(stream_url(server, token=f"guess{n}")) as resp:
                        assert resp.status == 403
                async with http.get(stream_url(server, token="t0ps3cret")) as resp:
                    assert resp.status == 429
                    assert (await resp.json())["error"] == "too_many_refusals"
                    assert int(resp.headers["Retry-After"]) >= 1
        refused = [e for e in logs if e["event"] == "player_token_wrong"]
        assert len(refused) == REFUSALS_ALLOWED
        assert all(e["endpoint"] == "GET /ace/getstream" for e in refused)
        assert "guess" not in repr(logs)
        assert "t0ps3cret" not in repr(logs)
        assert (await engine.stats())["sessions_started"] == 0


@pytest.mark.parametrize(
    "header",
    [b"X-API-Key: \xff\xfe", b"Authorization: Bearer \xc3\x28", b"X-API-Key: k\x80ey"],
)
async def test_a_key_header_that_is_not_utf8_gets_a_json_400_and_counts_as_refused(
    header: bytes,
) -> None:
    async with gateway(settings(api_key=KEY)) as server:
        head = b"POST /fleet/reconcile HTTP/1.1\r\nHost: gw\r\n" + header + b"\r\n"
        with capture_logs() as logs:
            status, content_type, body = await raw_request(
                server.port, head + b"Connection: close\r\n\r\n"
            )
        assert status == 400
        assert content_type.startswith("application/json")
        assert json.loads(body)["error"] == "bad_request"
        assert [e["why"] for e in logs if e["event"] == "api_key_refused"] == ["not UTF-8"]


async def test_any_header_that_is_not_utf8_never_gets_a_500() -> None:
    async with gateway(settings(api_key=KEY, protect_reads=True)) as server:
        for path, headers in [
            (b"/health", b"Host: gw\r\nX-Request-ID: \xff\xfe"),
            (b"/orchestrator/status", b"Host: gw\r\nX-API-Key: \xff"),
            (b"/orchestrator/status", b"Host: \xff\xfe\r\nAuthorization: Bearer \xff"),
            (b"/ace/getstream?id=x", b"Host: \xff\xfe\r\nUser-Agent: \xff"),
        ]:
            head = b"GET " + path + b" HTTP/1.1\r\n" + headers + b"\r\n"
            status, content_type, _ = await raw_request(
                server.port, head + b"Connection: close\r\n\r\n"
            )
            assert status < 500, path
            assert content_type.startswith("application/json"), path


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_refusal_count() -> None:
    async with gateway(settings(api_key=KEY, trusted_proxies="127.0.0.1")) as server:
        url = f"http://127.0.0.1:{server.port}/fleet/reconcile"
        with capture_logs() as logs:
            for _ in range(REFUSALS_ALLOWED):
                headers = {"X-API-Key": "guess", "X-Forwarded-For": "198.51.100.7"}
                assert (await call(url, headers))[0] == 403
            status, _, _ = await call(url, {"X-API-Key": KEY, "X-Forwarded-For": "198.51.100.7"})
            assert status == 429
            # Another client behind the same proxy, and a forged header in front of it.
            forged = {"X-API-Key": KEY, "X-Forwarded-For": "198.51.100.7, 198.51.100.8"}
            assert (await call(url, forged))[0] == 409
            # A peer that is no trusted proxy is itself the client, whatever its header says.
            for _ in range(REFUSALS_ALLOWED):
                headers = {"X-API-Key": "guess", "X-Forwarded-For": "198.51.100.9"}
                assert (await call(url, headers, source="127.0.0.2"))[0] == 403
            status, _, _ = await call(
                url, {"X-API-Key": KEY, "X-Forwarded-For": "192.0.2.1"}, source="127.0.0.2"
            )
            assert status == 429
        peers = [e["peer"] for e in logs if e["event"] == "api_key_refused"]
        assert peers == ["198.51.100.7"] * REFUSALS_ALLOWED + ["127.0.0.2"] * REFUSALS_ALLOWED


async def test_behind_a_trusted_proxy_the_start_limit_counts_each_forwarded_client(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    cfg = settings(
        player_channel_starts_per_minute=1,
        stream_linger_s=30,
        max_streams_per_engine=5,
        trusted_proxies="127.0.0.1",
    )
    async with gateway(cfg, engine) as server, aiohttp.ClientSession() as http:

        async def start(channel: str, client: str) -> int:
            headers = {"X-Forwarded-For": client}
            async with http.get(stream_url(server, channel), headers=headers) as resp:
                if resp.status == 200:
                    await resp.content.readexactly(188 * 10)
                return resp.status

        assert await start(CHANNEL, "198.51.100.7") == 200
        assert await start(OTHER, "198.51.100.7") == 429
        assert await start(OTHER, "198.51.100.8") == 200, "another client behind the proxy"
