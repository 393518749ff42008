"""The lineup and the guide of a running gateway, from a channel list and an XMLTV guide served
by the test over 127.0.0.1 (or read from files): channels, numbers, the filtered guide, the last
good copies kept when a refresh fails, and lists that are no lists never stopping the start."""

from __future__ import annotations

import asyncio
import gzip
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from acestream_gateway.http.channels import CHANNELS
from tests.integration.local import gateway, settings
from tests.support import free_port, wait_until

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)

PLAYLIST = (
    '#EXTM3U url-tvg="{guide}"\n'
    '#EXTINF:-1 tvg-id="one.uk" tvg-logo="http://logo/1.png" group-title="News",One\n'
    f"acestream://{A}\n"
    '#EXTINF:-1 tvg-id="two.uk" tvg-chno="20" group-title="Film",Two\n'
    f"http://192.168.1.5:6878/ace/getstream?id={B}\n"
    '#EXTINF:-1 tvg-id="one.uk",One (backup)\n'
    f"{C}\n"
    "#EXTINF:-1,Three\n"
    f"acestream://{D}\n"
    "#EXTINF:-1,No source\n"
)

GUIDE = """<?xml version="1.0" encoding="UTF-8"?>
<tv>
  <channel id="one.uk"><display-name>One</display-name></channel>
  <channel id="two.uk"><display-name>Two</display-name></channel>
  <channel id="other.uk"><display-name>Other</display-name></channel>
  <programme start="20260101000000 +0000" channel="one.uk"><title>News</title></programme>
  <programme start="20260101000000 +0000" channel="other.uk"><title>Other</title></programme>
  <programme start="20260101000000 +0000" channel="two.uk"><title>Film</title></programme>
</tv>
"""


class Origin:
    """A small web server of the test: what it answers is whatever the test sets now."""

    def __init__(self) -> None:
        self.bodies: dict[str, Any] = {}
        self.app = web.Application()
        self.app.router.add_get("/{name}", self._serve)
        self.server = TestServer(self.app, host="127.0.0.1", port=free_port())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.port}/{name}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = self.bodies.get(request.match_info["name"])
        if body is None:
            return web.Response(status=500)
        if callable(body):
            result: web.StreamResponse = await body(request)
            return result
        return web.Response(body=body)


@asynccontextmanager
async def origin() -> AsyncIterator[Origin]:
    served = Origin()
    await served.server.start_server()
    try:
        yield served
    finally:
        await served.server.close()


async def get(server: TestServer, path: str, **headers: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.port}{path}"
        async with http.get(url, headers=headers) as resp:
            return resp.status, await resp.read(), resp.content_type


async def get_json(server: TestServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


def lineup_settings(**values: Any) -> Any:
    return settings(hdhr_discovery=False, channels_fetch_timeout_s=2, **values)


def m3u_entries(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#EXTM3U")]
    return list(zip(lines[::2], lines[1::2], strict=True))


@pytest.mark.parametrize("compressed", [False, True])
async def test_lineup_and_guide_from_a_served_list_and_guide(compressed: bool) -> None:
    async with origin() as served:
        guide = GUIDE.encode()
        served.bodies["guide.xml"] = gzip.compress(guide) if compressed else guide
        served.bodies["list.m3u"] = PLAYLIST.format(guide=served.url("guide.xml")).encode()
        cfg = lineup_settings(channels_url=served.url("list.m3u"))
        async with gateway(cfg) as server:
            status, body, content_type = await get(server, "/channels.m3u", Host="tv.lan:8000")
            assert status == 200
            assert content_type == "audio/x-mpegurl"
            text = body.decode()
            assert text.splitlines()[0] == (
                '#EXTM3U url-tvg="http://tv.lan:8000/epg.xml" '
                'x-tvg-url="http://tv.lan:8000/epg.xml"'
            )
            assert m3u_entries(text) == [
                (
                    '#EXTINF:-1 tvg-id="two.uk" tvg-chno="20" tvg-name="Two" '
                    'group-title="Film",Two',
                    "http://tv.lan:8000/channel/20",
                ),
                (
                    '#EXTINF:-1 tvg-id="one.uk" tvg-chno="21" tvg-name="One" '
                    'tvg-logo="http://logo/1.png" group-title="News",One',
                    "http://tv.lan:8000/channel/21",
                ),
                (
                    '#EXTINF:-1 tvg-chno="22" tvg-name="Three",Three',
                    "http://tv.lan:8000/channel/22",
                ),
            ]
            listing = await get_json(server, "/channels")
            assert listing == [
                {
                    "number": 20,
                    "name": "Two",
                    "tvg_id": "two.uk",
                    "group": "Film",
                    "sources": [{"id": B, "state": "untried", "bad_until": None}],
                },
                {
                    "number": 21,
                    "name": "One",
                    "tvg_id": "one.uk",
                    "group": "News",
                    "sources": [
                        {"id": A, "state": "untried", "bad_until": None},
                        {"id": C, "state": "untried", "bad_until": None},
                    ],
                },
                {
                    "number": 22,
                    "name": "Three",
                    "tvg_id": None,
                    "group": None,
                    "sources": [{"id": D, "state": "untried", "bad_until": None}],
                },
            ]
            status, body, content_type = await get(server, "/epg.xml")
            assert status == 200
            assert content_type == "application/xml"
            root = ET.fromstring(body)
            assert [c.get("id") for c in root.iter("channel")] == ["21", "20"]
            assert [(p.get("channel"), p.findtext("title")) for p in root.iter("programme")] == [
                ("21", "News"),
                ("20", "Film"),
            ]
            report = await get_json(server, "/channels/status")
            assert report["list"]["channels"] == 3
            assert report["list"]["skipped"] == 1
            assert report["list"]["error"] is None
            assert report["guide"]["programmes"] == 2


async def test_files_and_a_gzip_guide_file_and_the_player_token_in_the_links(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "list.m3u"
    listing.write_text(PLAYLIST.format(guide="http://127.0.0.1:9/unused.xml"))
    guide = tmp_path / "guide.xml.gz"
    guide.write_bytes(gzip.compress(GUIDE.encode()))
    cfg = lineup_settings(
        channels_file=str(listing),
        epg_file=str(guide),
        player_token="s3cret",
        public_base_url="https://tv.example/gw",
    )
    async with gateway(cfg) as server:
        _, body, _ = await get(server, "/channels.m3u?token=s3cret")
        text = body.decode()
        assert "https://tv.example/gw/channel/21?token=s3cret" in text
        assert 'url-tvg="https://tv.example/gw/epg.xml?token=s3cret"' in text
        _, body, _ = await get(server, "/channels.m3u?token=wrong")
        assert "token" not in body.decode()
        assert "https://tv.example/gw/channel/21\n" in body.decode()
        _, body, _ = await get(server, "/epg.xml")
        assert [c.get("id") for c in ET.fromstring(body).iter("channel")] == ["21", "20"]


async def test_a_refresh_that_fails_keeps_the_last_good_list_and_guide_and_says_so() -> None:
    async with origin() as served:
        served.bodies["guide.xml"] = GUIDE.encode()
        served.bodies["list.m3u"] = PLAYLIST.format(guide=served.url("guide.xml")).encode()
        cfg = lineup_settings(channels_url=served.url("list.m3u"), channels_refresh_s=0.2)
        async with gateway(cfg) as server:
            before = await get_json(server, "/channels")
            _, guide_before, _ = await get(server, "/epg.xml")
            served.bodies["list.m3u"] = b"\x00\x01\x02 not a playlist"
            served.bodies.pop("guide.xml")

            async def failed_twice() -> bool:
                report = await get_json(server, "/channels/status")
                return bool(report["list"]["failures"] >= 2 and report["guide"]["failures"] >= 1)

            await wait_until(failed_twice, timeout_s=10)
            report = await get_json(server, "/channels/status")
            assert "not an M3U playlist" in report["list"]["error"]
            assert report["guide"]["error"] == "answered HTTP 500"
            assert await get_json(server, "/channels") == before
            assert (await get(server, "/epg.xml"))[1] == guide_before

            served.bodies["list.m3u"] = (
                f"#EXTM3U\n#EXTINF:-1,Four\nacestream://{'e' * 40}\n"
                f'#EXTINF:-1 tvg-id="one.uk",One\nacestream://{A}\n'
            ).encode()

            async def recovered() -> bool:
                return len(await get_json(server, "/channels")) == 2

            await wait_until(recovered, timeout_s=10)
            after = {c["name"]: c["number"] for c in await get_json(server, "/channels")}
            assert after == {"One": 21, "Four": 1}  # One keeps its number; Four fills a gap
            report = await get_json(server, "/channels/status")
            assert report["list"]["error"] is None


async def _hang(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"#EXTM3U\n")
    await asyncio.sleep(3600)
    return response


async def _fifty_megabytes(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    line = f"#EXTINF:-1,Channel\nacestream://{A}\n".encode()
    chunk = b"#EXTM3U\n" + line * (1024 * 1024 // len(line))
    for _ in range(50):
        await response.write(chunk)
    return response


def _garbage() -> bytes:
    return bytes(range(256)) * 4096


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_garbage(), "not an M3U playlist"),
        (_fifty_megabytes, "larger than the limit"),
        (_hang, "not read within 2 s"),
        (b"<html><body>Not found</body></html>", "not an M3U playlist"),
    ],
    ids=["binary", "50MB", "hanging", "html"],
)
async def test_a_list_that_cannot_be_read_is_a_clear_error_and_the_gateway_starts(
    body: Any, reason: str
) -> None:
    async with origin() as served:
        served.bodies["list.m3u"] = body
        started = time.monotonic()
        async with gateway(lineup_settings(channels_url=served.url("list.m3u"))) as server:
            assert time.monotonic() - started < 10
            report = await get_json(server, "/channels/status")
            assert reason in report["list"]["error"]
            assert await get_json(server, "/channels") == []
            status, body_out, _ = await get(server, "/channels.m3u")
            assert (status, body_out) == (200, b"#EXTM3U\n")
            assert (await get(server, "/health"))[0] == 200


async def test_entries_without_sources_and_duplicate_numbers_are_skipped_or_renumbered(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "list.m3u"
    listing.write_text(
        "#EXTM3U\n"
        '#EXTINF:-1 tvg-chno="5",Five\n'
        f"acestream://{A}\n"
        '#EXTINF:-1 tvg-chno="5",Also five\n'
        f"acestream://{B}\n"
        "#EXTINF:-1,Empty\n"
        "#EXTINF:-1,Web only\n"
        "http://example.com/live.ts\n"
    )
    async with gateway(lineup_settings(channels_file=str(listing))) as server:
        listing_out = await get_json(server, "/channels")
        assert [(c["name"], c["number"]) for c in listing_out] == [("Five", 5), ("Also five", 6)]
        report = await get_json(server, "/channels/status")
        assert report["list"]["skipped"] == 2
        assert report["list"]["number_clashes"] == 1
        assert server.app[CHANNELS].lineup.channel(6) is not None
