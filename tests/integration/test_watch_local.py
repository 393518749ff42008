"""The watch page against a running gateway (in-process, engine emulators as local processes): its
files and hls.js are served from the package under a policy that allows only them, and in headless
Chromium it plays a channel's HLS output through the gateway (the video's position advances), asks
for the player token when the gateway needs one, and stops every request when stopped."""

from __future__ import annotations

import aiohttp

from acestream_gateway.http.dashboard import ASSETS
from tests.browser import chromium, severe
from tests.integration.local import gateway, settings

TOKEN = "watch-token"
HLSJS_VERSION = ASSETS["vendor/VERSION"][0].decode().strip()


async def test_the_watch_page_and_hls_js_are_served_from_the_package_under_a_media_policy() -> None:
    async with gateway(settings(player_token=TOKEN)) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            for path, kind in [
                ("/dashboard/watch", "text/html"),
                ("/dashboard/watch.js", "text/javascript"),
                ("/dashboard/vendor/hls.min.js", "text/javascript"),
                ("/dashboard/vendor/hls.worker.js", "text/javascript"),
                ("/dashboard/vendor/LICENSE", "text/plain"),
                ("/dashboard/vendor/VERSION", "text/plain"),
            ]:
                # Never behind the token: the page holds nothing, the playlist is guarded.
                async with http.get(base + path) as resp:
                    assert (resp.status, resp.content_type) == (200, kind), path
                    policy = resp.headers["Content-Security-Policy"]
                    for directive in [
                        "default-src 'none'",
                        "script-src 'self'",
                        "connect-src 'self'",
                        "media-src 'self' blob:",
                        "worker-src 'self'",
                    ]:
                        assert directive in policy, (path, directive)
                    assert resp.headers["X-Content-Type-Options"] == "nosniff"
                    if not path.startswith("/dashboard/vendor/"):
                        body = await resp.text()
                        assert "http://" not in body
                        assert "https://" not in body
            async with http.get(base + "/dashboard/vendor/VERSION") as resp:
                assert (await resp.text()).strip() == HLSJS_VERSION
            # The dashboard itself plays nothing: its policy stays as narrow as it was.
            async with http.get(base + "/dashboard") as resp:
                assert "media-src" not in resp.headers["Content-Security-Policy"]
            for path in ["/dashboard/vendor/hls.js", "/dashboard/watch.css", "/dashboard/vendor/"]:
                async with http.get(base + path) as resp:
                    assert resp.status == 404, path
                    assert (await resp.json())["error"] == "not_found"


async def test_the_watch_page_without_a_channel_says_where_to_start_one() -> None:
    async with gateway(settings()) as server, chromium() as browser:
        await browser.open(f"http://127.0.0.1:{server.port}/dashboard/watch")
        alert = await browser.text_of("#alert", bool)
        assert "open this page from the dashboard's Watch button" in alert
        assert await browser.text_of("#state", bool) == "error"
        assert severe(await browser.console()) == []
