"""Debian's headless Chromium, driven through Debian's chromedriver by Selenium: the dashboard's
browser tests and its screenshot use it.

Nothing is downloaded: the driver and the browser are given by path (so Selenium Manager never
runs), Selenium's own lookups are switched off, and the browser resolves no name but loopback
addresses. Selenium is synchronous, and the gateway under test usually runs on the test's event
loop, so every browser call is made in a worker thread (``Browser``'s async methods) and the loop
stays free to answer the page.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import need

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Selenium's environment: no usage statistics sent, and Selenium Manager (never needed with
# explicit paths) offline should anything call it.
SELENIUM_ENV = {"SE_AVOID_STATS": "true", "SE_OFFLINE": "true"}

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--password-store=basic",
    # No name resolves but loopback: the page cannot load anything from elsewhere unnoticed.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--window-size=1440,1000",
]

T = TypeVar("T")

# A table's rows in one script run, so no row changes halfway through the reading.
ROWS = """
return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map((row) =>
  Object.fromEntries([...row.querySelectorAll('[data-field]')].map(
    (cell) => [cell.dataset.field, cell.textContent.trim()])));
"""


def need_chromium() -> None:
    need(CHROMIUM.exists(), "chromium (Debian package chromium)")
    need(CHROMEDRIVER.exists(), "chromedriver (Debian package chromium-driver)")


def start_chromium(profile: Path) -> webdriver.Chrome:
    """A headless Chromium with a fresh profile in ``profile``, its console kept for reading."""
    os.environ.update(SELENIUM_ENV)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    return webdriver.Chrome(service=service, options=options)


class Browser:
    """One Chromium, its calls made off the event loop, every wait explicit and bounded."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def until(
        self, condition: Callable[[webdriver.Chrome], T | None], timeout_s: float = 15
    ) -> T:
        """Wait for ``condition`` (given the driver) to return something truthy, and return it."""
        # The page rewrites cells every poll: an element found a moment ago may be gone.
        wait = WebDriverWait(
            self.driver,
            timeout_s,
            poll_frequency=0.1,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        )
        result: T | None = await self.call(wait.until, condition)
        assert result is not None
        return result

    async def gone(self, css: str, timeout_s: float = 15) -> None:
        await self.until(lambda d: not d.find_elements(By.CSS_SELECTOR, css), timeout_s)

    async def text_of(self, css: str, wanted: Callable[[str], bool], timeout_s: float = 15) -> str:
        """Wait until the element's text satisfies ``wanted``; return that text."""

        def matching(driver: webdriver.Chrome) -> str | None:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                text = element.text
                if wanted(text):
                    return text or " "
            return None

        return (await self.until(matching, timeout_s)).strip()

    async def rows(self, table: str) -> list[dict[str, str]]:
        """The table's body rows as the page shows them, field name to text, read at once."""
        rows: list[dict[str, str]] = await self.call(self.driver.execute_script, ROWS, table)
        return rows

    async def element(self, css: str, timeout_s: float = 15) -> WebElement:
        def found(driver: webdriver.Chrome) -> WebElement | None:
            elements = driver.find_elements(By.CSS_SELECTOR, css)
            return elements[0] if elements and elements[0].is_displayed() else None

        return await self.until(found, timeout_s)

    async def click(self, css: str) -> None:
        await self.call((await self.element(css)).click)

    async def type(self, css: str, text: str) -> None:
        element = await self.element(css)
        await self.call(element.clear)
        await self.call(element.send_keys, text)

    async def console(self) -> list[dict[str, Any]]:
        """The console entries since the last call (errors, warnings, logs)."""
        entries: list[dict[str, Any]] = await self.call(self.driver.get_log, "browser")
        return entries

    async def screenshot(self, path: Path) -> None:
        """The whole page as PNG, below the window's fold too."""
        shot = await self.call(
            self.driver.execute_cdp_cmd,
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
        )
        await self.call(_write, path, base64.b64decode(shot["data"]))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A Chromium for one test or script, quit and its profile removed afterwards."""
    need_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        driver = await asyncio.to_thread(start_chromium, Path(profile))
        try:
            yield Browser(driver)
        finally:
            await asyncio.to_thread(driver.quit)


def severe(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The console's errors."""
    return [e for e in entries if e.get("level") == "SEVERE"]
