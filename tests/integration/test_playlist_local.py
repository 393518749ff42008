"""``POST /playlist.m3u`` of a running gateway: links to its player URLs, the rest untouched."""

from __future__ import annotations

import aiohttp

from tests.integration.local import gateway, settings
from tests.support import CHANNEL

PLAYLIST = (
    '#EXTM3U x-tvg-url="http://epg.example/guide.xml"\r\n'
    '#EXTINF:-1 tvg-id="one" group-title="Sport",One\r\n'
    f"acestream://{CHANNEL}\r\n"
    "#EXTINF:-1,Two\r\n"
    f"http://192.168.1.9:6878/ace/getstream?id={CHANNEL}&pid=3\r\n"
    "#EXTINF:-1,Elsewhere\r\n"
    "http://example.com/stream.ts\r\n"
).encode()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "audio/x-mpegurl"
        return await resp.read()


async def test_a_playlist_comes_back_pointing_at_the_host_it_was_sent_to() -> None:
    async with gateway(settings()) as server:
        url = f"http://127.0.0.1:{server.port}/playlist.m3u"
        out = await post(url, PLAYLIST, {"Host": "tv.lan:8000"})
    player = f"http://tv.lan:8000/ace/getstream?id={CHANNEL}".encode()
    assert out == PLAYLIST.replace(f"acestream://{CHANNEL}".encode(), player).replace(
        f"http://192.168.1.9:6878/ace/getstream?id={CHANNEL}&pid=3".encode(), player
    )


async def test_public_base_url_wins_over_the_host() -> None:
    async with gateway(settings(public_base_url="https://tv.example.org/gw")) as server:
        out = await post(f"http://127.0.0.1:{server.port}/playlist.m3u", PLAYLIST)
    assert out.count(f"https://tv.example.org/gw/ace/getstream?id={CHANNEL}".encode()) == 2
    assert b"http://example.com/stream.ts\r\n" in out
