"""The watch page against a running gateway (in-process, engine emulators as local processes): its
files and hls.js are served from the package under a policy that allows only them, and in headless
Chromium it plays a channel's HLS output through the gateway (the video's position advances), asks
for the player token when the gateway needs one, plays on across a failover (one discontinuity),
starts at once on a channel whose window is full, plays through the browser's own HLS where Media
Source Extensions are missing, and stops every request when stopped; once it is left, its HLS-only
channel stops."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from acestream_gateway.http.dashboard import ASSETS
from acestream_gateway.http.keys import REGISTRY
from acestream_gateway.streaming.channel import Channel
from tests.browser import Browser, chromium, severe
from tests.integration.local import FAST, OTHER, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL, Player, wait_until

TOKEN = "watch-token"
STREAM = "#streams tbody tr"
WATCH = f"/dashboard/watch?id={CHANNEL}"
HLSJS_VERSION = ASSETS["vendor/VERSION"].body.decode().strip()
# Longer than a target duration: hls.js reloads a live playlist at least that often.
SILENCE_S = 6

# What the page shows of its player, read at once.
PLAYER_STATE = """
const video = document.getElementById('video');
const text = (id) => document.getElementById(id).textContent.trim();
return {
  position: video.currentTime,
  width: video.videoWidth,
  state: text('state'),
  segments: Number(text('segments')),
  player: text('player'),
  alert: document.getElementById('alert').hidden ? '' : text('alert'),
  errors: [...document.querySelectorAll('#log li.error')].map((item) => item.textContent),
  requests: performance.getEntriesByType('resource')
    .filter((entry) => entry.name.includes('/ace/')).length,
};
"""


async def player_state(browser: Browser) -> dict[str, Any]:
    state: dict[str, Any] = await browser.call(browser.driver.execute_script, PLAYER_STATE)
    return state


async def plays_for(browser: Browser, seconds: int) -> list[str]:
    """Read the video's position once a second for ``seconds`` seconds once it plays: each
    reading must be ahead of the one before, with no alert and no new error. The errors the page
    showed before are returned."""
    await browser.until(lambda d: d.execute_script(PLAYER_STATE)["position"] > 0, timeout_s=30)
    errors: list[str] = (await player_state(browser))["errors"]
    positions = []
    for _ in range(seconds + 1):
        state = await player_state(browser)
        assert (state["alert"], state["errors"]) == ("", errors), state
        positions.append(state["position"])
        await asyncio.sleep(1)
    assert all(b > a for a, b in itertools.pairwise(positions)), positions
    # Real time, give or take the player's catching up at the live edge.
    assert positions[-1] - positions[0] > seconds * 0.8, positions
    return errors


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
            # A browser that holds hls.js already is told so, not sent it again.
            async with http.get(base + "/dashboard/vendor/hls.min.js") as resp:
                etag = resp.headers["ETag"]
            async with http.get(
                base + "/dashboard/vendor/hls.min.js", headers={"If-None-Match": etag}
            ) as resp:
                assert (resp.status, await resp.read()) == (304, b"")
                assert resp.headers["ETag"] == etag
            async with http.get(
                base + "/dashboard/vendor/hls.min.js", headers={"If-None-Match": '"other"'}
            ) as resp:
                assert resp.status == 200
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


async def test_the_dashboards_watch_button_plays_the_channel_through_the_gateways_hls(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(stream_linger_s=60), engine) as server, chromium() as browser:
        base = f"http://127.0.0.1:{server.port}"
        player = Player(stream_url(server))
        try:
            await player.receives(188 * 100)
            await browser.open(base + "/dashboard")
            dashboard = browser.driver.current_window_handle
            await browser.click(f'{STREAM} a[aria-label="Watch stream {CHANNEL}"]')
            # A tab of its own: the dashboard goes on polling.
            await browser.until(lambda d: len(d.window_handles) == 2 or None)
            watch = next(h for h in browser.driver.window_handles if h != dashboard)
            await browser.call(browser.driver.switch_to.window, watch)
            assert browser.driver.current_url == base + WATCH

            # The picture decodes (Debian's Chromium has H.264) and plays in real time.
            assert await plays_for(browser, 5) == []
            state = await player_state(browser)
            assert state["state"] == "playing"
            assert state["player"] == f"hls.js {HLSJS_VERSION}"
            assert state["width"] == 64
            assert state["segments"] >= 2
            assert severe(await browser.console()) == []
            assert not player.ended.is_set()

            # The dashboard counts the viewer among the channel's players, as an HLS player.
            await browser.call(browser.driver.switch_to.window, dashboard)
            players = f'{STREAM} [data-field="players"]'
            assert await browser.text_of(players, lambda t: t != "1") == "2 (1 HLS)"
            await browser.text_of("#streams-detail", lambda t: t.endswith("2 players (1 HLS)"))
            await browser.call(browser.driver.switch_to.window, watch)

            # Stopped, the page asks for nothing more (hls.js would reload the live playlist
            # within a target duration).
            await browser.click("#stop")
            await browser.text_of("#state", lambda t: t == "stopped")
            stopped = await player_state(browser)
            await asyncio.sleep(SILENCE_S)
            after = await player_state(browser)
            assert after["requests"] == stopped["requests"]
            assert after["position"] == 0
            assert severe(await browser.console()) == []
        finally:
            await player.close()


async def test_the_watch_button_names_the_channel_as_its_players_asked_for_it(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server, chromium() as browser:
        base = f"http://127.0.0.1:{server.port}"
        player = Player(f"{base}/ace/getstream?infohash={OTHER}&file_indexes=1")
        try:
            await player.receives(188 * 100)
            await browser.open(base + "/dashboard")
            link = await browser.element(f'a[aria-label="Watch stream {OTHER}"]')
            wanted = f"{base}/dashboard/watch?infohash={OTHER}&file_indexes=1"
            assert await browser.call(link.get_attribute, "href") == wanted
            assert await browser.call(link.get_attribute, "target") == "_blank"
        finally:
            await player.close()


async def test_the_watch_page_shows_why_the_gateway_cannot_play_the_channel(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST, unknown_ids=CHANNEL)
    async with gateway(settings(), engine) as server, chromium() as browser:
        await browser.open(f"http://127.0.0.1:{server.port}{WATCH}")
        # hls.js asks once more after a 5xx, then gives up: the gateway's JSON reason is shown.
        alert = await browser.text_of("#alert", bool, timeout_s=20)
        refused = r"hls.js fatal networkError manifestLoadError \(HTTP 502: \w.*\)"
        assert re.fullmatch(refused, alert), alert
        assert await browser.text_of("#state", bool) == "error"
        assert await browser.text_of("#play", bool) == "Play again"
        await wait_until(lambda: no_session(engine), timeout_s=5)


async def test_the_watch_page_asks_for_the_player_token_and_never_shows_it(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(player_token=TOKEN), engine) as server, chromium() as browser:
        await browser.open(f"http://127.0.0.1:{server.port}{WATCH}")
        alert = await browser.text_of("#alert", lambda t: "token" in t)
        assert "PLAYER_TOKEN" in alert
        assert await browser.text_of("#state", bool) == "error"
        assert browser.driver.switch_to.active_element.get_attribute("id") == "token"

        await browser.type("#token", "not-the-token")
        await browser.click("#token-save")
        await browser.text_of("#alert", lambda t: "wrong" in t)

        # The first playlist request starts the channel, then the page plays it.
        await browser.type("#token", TOKEN)
        await browser.click("#token-save")
        await browser.text_of("#token-state", lambda t: t == "token in use")
        errors = await plays_for(browser, 2)
        assert len(errors) == 2
        assert "player token is wrong" in errors[0]
        assert "needs its player token" in errors[1]
        assert TOKEN not in browser.driver.page_source
        # The browser reports the two refused playlist requests, nothing else.
        codes = sorted(
            "401" if "401" in e["message"] else "403" if "403" in e["message"] else e["message"]
            for e in severe(await browser.console())
        )
        assert codes == ["401", "403"]


async def test_the_watch_page_plays_on_across_a_failover_with_one_discontinuity(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    cfg = settings(failover_backoff_s=0.1, stall_timeout_s=1.0)
    async with gateway(cfg, engine) as server, chromium() as browser:
        await browser.open(f"http://127.0.0.1:{server.port}{WATCH}")
        assert await plays_for(browser, 2) == []
        await browser.text_of("#sequence", lambda t: "sequence" in t and "discontinu" not in t)

        # The engine ends the channel's session; the gateway opens it again.
        await engine.control(end_after_s="1.0")
        channel = the_channel(server)
        await wait_until(lambda: channel.failovers >= 1, timeout_s=10)
        await engine.control(end_after_s="never")

        await browser.text_of("#sequence", lambda t: t.endswith(" · 1 discontinuity"))
        assert await plays_for(browser, 5) == []
        assert channel.failovers == 1
        assert severe(await browser.console()) == []


async def test_a_second_viewer_of_a_channel_whose_window_is_full_starts_at_once(
    emulators: Callable[..., Emulator],
) -> None:
    # Segments of one keyframe interval (2 s), six in the window: full within 15 s.
    engine = emulators(**FAST)
    cfg = settings(hls_segment_s=1)
    async with gateway(cfg, engine) as server, chromium() as browser:
        url = f"http://127.0.0.1:{server.port}{WATCH}"
        await browser.open(url)
        assert await plays_for(browser, 1) == []
        await browser.text_of("#sequence", window_of(6), timeout_s=30)

        await browser.call(browser.driver.switch_to.new_window, "tab")
        opened = time.monotonic()
        await browser.open(url)
        # hls.js starts three segments behind the end, all of them already buffered.
        await browser.until(lambda d: d.execute_script(PLAYER_STATE)["position"] > 0, timeout_s=5)
        assert time.monotonic() - opened < 3
        assert await plays_for(browser, 2) == []
        assert severe(await browser.console()) == []


async def test_without_media_source_extensions_the_page_plays_through_the_browsers_own_hls(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(hls_segment_s=1), engine) as server, chromium() as browser:
        base = f"http://127.0.0.1:{server.port}"
        # The browser's own HLS (Chromium's, here) wants three target durations listed, as
        # RFC 8216 asks of a live playlist; a channel just started lists fewer.
        async with aiohttp.ClientSession() as http:

            async def listed() -> int:
                async with http.get(f"{base}/ace/manifest.m3u8?id={CHANNEL}") as resp:
                    return (await resp.text()).count("#EXTINF")

            await wait_until(lambda: at_least(listed(), 6), timeout_s=30)
        # As on older iOS Safari: no MediaSource, so hls.js cannot run.
        await browser.call(
            browser.driver.execute_cdp_cmd,
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": "delete window.MediaSource; delete window.ManagedMediaSource;"},
        )
        await browser.open(base + WATCH)
        assert await plays_for(browser, 3) == []
        assert (await player_state(browser))["player"] == "the browser's HLS"

        await browser.click("#stop")
        await browser.text_of("#state", lambda t: t == "stopped")
        assert (await player_state(browser))["position"] == 0


async def at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


async def test_once_its_watch_page_is_left_an_hls_only_channel_stops(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    # Idle the least HLS_IDLE_S may be (twice a segment: the page's fetches are about a segment,
    # 4 s, apart), and shorter than a test.
    async with gateway(settings(hls_idle_s=8), engine) as server, chromium() as browser:
        base = f"http://127.0.0.1:{server.port}"
        await browser.open(base + WATCH)
        assert await plays_for(browser, 1) == []
        assert (await engine.stats())["sessions_active"] == 1

        # The same tab goes to the dashboard: the channel shows there, then lapses and stops.
        await browser.open(base + "/dashboard")
        assert await browser.text_of(f'{STREAM} [data-field="players"]', bool) == "1 (1 HLS)"
        await browser.text_of("#streams-empty", lambda t: "No stream" in t, timeout_s=20)
        await wait_until(lambda: no_session(engine), timeout_s=5)


async def no_session(engine: Emulator) -> bool:
    active: int = (await engine.stats())["sessions_active"]
    return active == 0


def window_of(size: int) -> Callable[[str], bool]:
    """Whether the page's playlist figures show ``size`` segments listed."""

    def shown(text: str) -> bool:
        found = re.match(r"sequence (\d+)\N{EN DASH}(\d+)", text)
        return found is not None and int(found[2]) - int(found[1]) + 1 == size

    return shown


def the_channel(server: TestServer) -> Channel:
    (channel,) = server.app[REGISTRY].channels()
    return channel
