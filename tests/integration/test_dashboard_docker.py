"""The dashboard's fleet actions in headless Chromium against a gateway with a real Docker fleet
(emulator image): start an engine, drain the engine of a playing stream (it shows draining and
keeps the stream), and once the stream is stopped the drained engine leaves the page."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from selenium.webdriver.remote.webdriver import WebDriver

from acestream_gateway.app import create_app
from acestream_gateway.settings import Settings
from tests.browser import ROWS, Browser, chromium, severe
from tests.support import CHANNEL, Player, emulator_fleet_settings, free_port

pytestmark = pytest.mark.docker

KEY = "dashboard-key"
STREAM = "#streams tbody tr"
NOTHING = "\N{EN DASH}"  # what the page shows for a value it does not have


def fleet_settings(instance: str) -> Settings:
    return emulator_fleet_settings(
        instance,
        4,
        engine_env={"EMULATOR_PREBUFFER_S": "0", "EMULATOR_BURST_BYTES": "376000"},
        min_replicas=1,
        max_active_replicas=3,
        max_streams_per_engine=1,
        health_check_interval_s=1,
        stream_linger_s=0.2,
        api_key=KEY,
    )


def engine_states(driver: WebDriver) -> dict[str, str]:
    """Each engine's name and state as the page shows them."""
    rows: list[dict[str, str]] = driver.execute_script(ROWS, "#engines")
    return {row["name"]: row["state"] for row in rows}


async def engine_state(browser: Browser, name: str, state: str | None) -> None:
    """Wait until the page shows the engine in ``state`` (None: not at all)."""
    await browser.until(lambda d: engine_states(d).get(name) == state or None, timeout_s=60)


async def test_an_operator_drains_the_engine_of_a_playing_stream_from_the_dashboard(
    instance: str,
) -> None:
    server = TestServer(create_app(fleet_settings(instance)), host="127.0.0.1", port=free_port())
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    player = Player(f"{base}/ace/getstream?id={CHANNEL}")
    try:
        await player.receives(188 * 50, timeout_s=60)
        async with chromium() as browser:
            await browser.open(base + "/dashboard")
            assert await browser.text_of(f'{STREAM} [data-field="state"]', bool) == "playing"
            name = await browser.text_of(f'{STREAM} [data-field="engine"]', lambda t: t != NOTHING)
            await engine_state(browser, name, "ready")
            assert severe(await browser.console()) == []

            await browser.type("#api-key", KEY)
            await browser.click("#key-save")
            await browser.click("#start-engine")
            await browser.text_of("#log li:first-child", lambda t: "start an engine: done" in t)
            await browser.until(lambda d: len(engine_states(d)) == 2 or None, timeout_s=60)

            await browser.click(f'button[aria-label="Drain engine {name}"]')
            await browser.text_of("#log li:first-child", lambda t: f"drain {name}: done" in t)
            await engine_state(browser, name, "draining")
            await player.receives(188 * 50)  # the stream plays on through the drain

            await browser.click(f'{STREAM} button[aria-label="Stop stream {CHANNEL}"]')
            await browser.gone(STREAM)
            await engine_state(browser, name, None)  # empty and drained: removed
            assert severe(await browser.console()) == []
    finally:
        await player.close()
        await server.close()
