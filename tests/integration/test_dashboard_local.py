"""The dashboard in headless Chromium against a running gateway (in-process, engine emulators as
local processes): it loads with no console error, shows the engine and a playing stream with its
figures, shows the API's refusals, and with the API key typed in stops a stream."""

from __future__ import annotations

import re
from collections.abc import Callable

import aiohttp

from tests.browser import Browser, chromium, severe
from tests.integration.local import FAST, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL, Player, wait_until

KEY = "dashboard-key"
ENGINE = 'tr[data-engine="emu0"]'
STREAM = "#streams tbody tr"


def field(row: str, name: str) -> str:
    return f'{row} [data-field="{name}"]'


async def last_action(browser: Browser, wanted: str) -> str:
    return await browser.text_of("#log li:first-child", lambda t: wanted in t)


async def test_the_page_and_its_files_are_served_from_the_package_and_allow_nothing_else() -> None:
    async with gateway(settings(api_key=KEY, protect_reads=True)) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/", allow_redirects=False) as resp:
                assert (resp.status, resp.headers["Location"]) == (302, "dashboard")
            for path, kind in [
                ("/dashboard", "text/html"),
                ("/dashboard/dashboard.js", "text/javascript"),
                ("/dashboard/dashboard.css", "text/css"),
            ]:
                # Never behind the key: the page holds no data, it asks for the key itself.
                async with http.get(base + path) as resp:
                    assert (resp.status, resp.content_type) == (200, kind), path
                    policy = resp.headers["Content-Security-Policy"]
                    assert "default-src 'none'" in policy
                    assert "script-src 'self'" in policy
                    assert "connect-src 'self'" in policy
                    body = await resp.text()
                    assert "http://" not in body
                    assert "https://" not in body
            async with http.get(base + "/dashboard/other.js") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"] == "not_found"


async def test_the_dashboard_shows_a_playing_stream_and_stops_it_with_the_key(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    cfg = settings(api_key=KEY, stream_linger_s=60, stat_interval_s=0.5)
    async with gateway(cfg, engine) as server, chromium() as browser:
        base = f"http://127.0.0.1:{server.port}"
        player = Player(stream_url(server))
        try:
            await player.receives(188 * 100)
            await browser.open(base + "/")
            assert browser.driver.current_url == base + "/dashboard"

            # The fleet, the stream with its player, throughput from successive polls, the
            # engine's own figures from its stat poll.
            assert await browser.text_of(field(ENGINE, "state"), bool) == "ready"
            assert await browser.text_of(field(ENGINE, "streams"), bool) == "1 / 2"
            assert await browser.text_of(field(STREAM, "content"), bool) == CHANNEL
            assert await browser.text_of(field(STREAM, "state"), bool) == "playing"
            assert await browser.text_of(field(STREAM, "players"), bool) == "1"
            assert await browser.text_of(field(STREAM, "engine"), bool) == "emulator-0"
            await browser.text_of(field(STREAM, "rate_out"), lambda t: "bit/s" in t)
            await browser.text_of(field(STREAM, "peers"), lambda t: t.isdigit())
            await browser.text_of("#capacity-figure", lambda t: t == "1 / 1 in use")
            await browser.text_of("#provisioning-figure", lambda t: t == "can provision")
            await browser.text_of("#endpoints-figure", lambda t: t == "none")
            await browser.text_of("#endpoints-list li", lambda t: t.startswith("fixed engines"))
            assert await browser.text_of("#overall", bool) == "healthy"
            assert severe(await browser.console()) == []

            # Without the key the action is refused, and the page says so.
            await browser.click(f'{STREAM} button[aria-label="Stop stream {CHANNEL}"]')
            assert "401 unauthorized" in await last_action(browser, "401")
            assert not player.ended.is_set()
            # The refusal is the console's only error (which shows the console is read).
            errors = [e["message"] for e in severe(await browser.console())]
            assert errors, "the browser reports a refused request as a console error"
            assert all("401" in message for message in errors), errors

            # With it the stream stops: its player's response ends and its row goes.
            await browser.type("#api-key", KEY)
            await browser.click("#key-save")
            await browser.text_of("#key-state", lambda t: t == "key in use")
            await browser.click(f'{STREAM} button[aria-label="Stop stream {CHANNEL}"]')
            await last_action(browser, f"stop {CHANNEL}: done")
            await wait_until(player.ended.is_set, timeout_s=10)
            await browser.gone(STREAM)
            await browser.text_of("#streams-empty", lambda t: "No stream" in t)
            # Its engine's slot is free once the engine session is stopped.
            await browser.text_of(field(ENGINE, "streams"), lambda t: t == "0 / 2")

            # An action that cannot apply here (no Docker fleet) shows the API's reason.
            await browser.click(f'{ENGINE} button[aria-label="Drain engine emulator-0"]')
            refusal = await last_action(browser, "409")
            assert re.search(r"drain emulator-0: 409 conflict: .*runs no engines here", refusal)
            errors = [e["message"] for e in severe(await browser.console())]
            assert all("409" in message for message in errors), errors
        finally:
            await player.close()


async def test_with_protected_reads_the_dashboard_asks_for_the_key(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(api_key=KEY, protect_reads=True), engine) as server:
        async with chromium() as browser:
            await browser.open(f"http://127.0.0.1:{server.port}/dashboard")
            alert = await browser.text_of("#alert", lambda t: "API key" in t)
            assert "PROTECT_READS" in alert
            assert not browser.driver.find_elements("css selector", ENGINE)

            await browser.type("#api-key", "wrong")
            await browser.click("#key-save")
            await browser.text_of("#alert", lambda t: "wrong" in t)

            await browser.type("#api-key", KEY)
            await browser.click("#key-save")
            assert await browser.text_of(field(ENGINE, "state"), bool) == "ready"
            await browser.until(lambda d: not d.find_element("id", "alert").is_displayed())
