"""Writes docs/dashboard.png: the dashboard with streams playing, taken by the browser tests'
headless Chromium (tests/browser.py) from a gateway in this process with two engine emulators as
local processes and a few players; and beside it watch.png, the watch page playing one of those
channels. Run by scripts/dashboard-screenshot.

Usage: python -m tests.dashboard_screenshot [PATH]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.browser import Browser, chromium
from tests.integration.local import FAST, OTHER, Emulator, gateway, settings, stream_url
from tests.support import CHANNEL, ROOT, Player

THIRD = "89abcdef0123456789abcdef0123456789abcdef"
ZAPPED = "fedcba9876543210fedcba9876543210fedcba98"
KEY = "screenshot"


async def take(path: Path) -> None:
    emulators = [Emulator(**FAST), Emulator(**FAST)]
    cfg = settings(api_key=KEY, stat_interval_s=0.5, stream_linger_s=30, max_streams_per_engine=2)
    players: list[Player] = []
    try:
        async with gateway(cfg, *emulators) as server, chromium() as browser:
            for channel in (CHANNEL, CHANNEL, OTHER, THIRD, ZAPPED):
                players.append(Player(stream_url(server, channel)))
                await players[-1].receives(188 * 50)
            await browser.open(f"http://127.0.0.1:{server.port}/dashboard")
            await browser.type("#api-key", KEY)
            await browser.click("#key-save")
            await browser.click(f'button[aria-label="Stop stream {ZAPPED}"]')
            await browser.text_of("#log li", lambda t: "done" in t)
            # Every stream with a rate and the engine's figures, past its start's burst (five
            # seconds in), the zapped one gone.
            await browser.until(
                lambda d: d.execute_script(
                    "const rows = [...document.querySelectorAll('#streams tbody tr')];"
                    "return rows.length === 3 && rows.every(r =>"
                    " r.querySelector('[data-field=rate_out]').textContent.includes('bit/s') &&"
                    " /^[0-9]+$/.test(r.querySelector('[data-field=peers]').textContent) &&"
                    " /^([5-9]|[0-9]{2,}) s$/.test(r.querySelector('[data-field=started]')"
                    ".textContent));"
                ),
                timeout_s=30,
            )
            await browser.call(browser.driver.execute_script, "document.activeElement.blur()")
            await browser.screenshot(path)
            await watch(browser, path.with_name("watch.png"))
    finally:
        for player in players:
            await player.close()
        for emulator in emulators:
            emulator.stop()


async def watch(browser: Browser, path: Path) -> None:
    """The watch page the dashboard opens for CHANNEL, a few seconds into playing."""
    dashboard = browser.driver.current_window_handle
    await browser.click(f'a[aria-label="Watch stream {CHANNEL}"]')
    await browser.until(lambda d: len(d.window_handles) == 2 or None)
    tab = next(h for h in browser.driver.window_handles if h != dashboard)
    await browser.call(browser.driver.switch_to.window, tab)
    await browser.until(
        lambda d: d.execute_script("return document.getElementById('video').currentTime > 6"),
        timeout_s=60,
    )
    await browser.screenshot(path)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "dashboard.png"
    asyncio.run(take(path))
    print(path)


if __name__ == "__main__":
    main()
