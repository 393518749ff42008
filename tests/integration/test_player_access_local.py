"""The player token and the per-client start limit through HTTP, with engine emulators as local
processes: players without the token are refused with JSON, the token never reaches the logs,
and one client cannot start more channels a minute than allowed (others, and joins, still can)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from structlog.testing import capture_logs

from tests.integration.local import FAST, OTHER, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL

THIRD = "fedcba9876543210fedcba9876543210fedcba98"


async def status_of(url: str, method: str = "GET", source: str = "127.0.0.1") -> tuple[int, dict]:  # type: ignore[type-arg]
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.request(method, url) as resp,
    ):
        if resp.status == 200:
            if method == "GET":
                await resp.content.readexactly(188 * 10)
            return 200, {}
        body = await resp.json() if method == "GET" else {}
        return resp.status, body


async def test_players_need_the_token_when_one_is_set_and_it_never_reaches_the_logs(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(player_token="t0ps3cret"), engine) as server:
        with capture_logs() as logs:
            for method in ("GET", "HEAD"):
                status, body = await status_of(stream_url(server), method)
                assert status == 401
                status, body = await status_of(stream_url(server, token="n0tth1s"), method)
                assert status == 403
            status, body = await status_of(stream_url(server))
            assert body["error"] == "unauthorized"
            assert (await engine.stats())["sessions_started"] == 0
            status, _ = await status_of(stream_url(server, token="t0ps3cret"))
            assert status == 200
            status, _ = await status_of(stream_url(server, token="t0ps3cret"), "HEAD")
            assert status == 200
        assert "t0ps3cret" not in repr(logs)
        assert "n0tth1s" not in repr(logs)


async def test_one_client_cannot_start_more_channels_a_minute_than_allowed(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    cfg = settings(player_channel_starts_per_minute=2, stream_linger_s=30, max_streams_per_engine=5)
    async with gateway(cfg, engine) as server:
        assert (await status_of(stream_url(server, CHANNEL)))[0] == 200
        assert (await status_of(stream_url(server, OTHER)))[0] == 200
        status, body = await status_of(stream_url(server, THIRD))
        assert status == 429
        assert body["error"] == "too_many_channels"
        # Joining a channel that plays is free, and another client has its own count.
        assert (await status_of(stream_url(server, CHANNEL)))[0] == 200
        assert (await status_of(stream_url(server, THIRD), source="127.0.0.2"))[0] == 200
        assert (await engine.stats())["sessions_started"] == 3


async def test_a_refused_start_says_when_to_try_again(emulators: Callable[..., Emulator]) -> None:
    engine = emulators(**FAST)
    cfg = settings(player_channel_starts_per_minute=1, stream_linger_s=30)
    async with gateway(cfg, engine) as server:
        assert (await status_of(stream_url(server, CHANNEL)))[0] == 200
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.1", 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(stream_url(server, OTHER)) as resp:
                assert resp.status == 429
                assert 1 <= int(resp.headers["Retry-After"]) <= 60


async def test_a_playlist_carries_the_player_token_only_for_whoever_gave_it(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    playlist = f"#EXTM3U\n#EXTINF:-1,One\nacestream://{CHANNEL}\n".encode()
    async with gateway(settings(player_token="t0ps3cret"), engine) as server:
        base = f"http://127.0.0.1:{server.port}/playlist.m3u"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "?token=t0ps3cret", data=playlist) as resp:
                with_token = (await resp.read()).decode()
            async with http.post(base, data=playlist) as resp:
                without = (await resp.read()).decode()
            async with http.post(base + "?token=guess", data=playlist) as resp:
                guessed = (await resp.read()).decode()
        link = f"/ace/getstream?id={CHANNEL}"
        assert f"{link}&token=t0ps3cret\n" in with_token
        assert f"{link}\n" in without
        assert "t0ps3cret" not in without + guessed
        # The rewritten link plays.
        url = with_token.splitlines()[-1]
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
