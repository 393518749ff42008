"""The dashboard's channel table in headless Chromium: each channel with its sources' states, a
channel whose every source failed marked, and the list's last load shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from acestream_gateway.http.channels import CHANNELS
from tests.browser import chromium, severe
from tests.integration.local import FAST, Emulator, gateway, settings
from tests.support import Player

A, B, C = "a" * 40, "b" * 40, "c" * 40
NONE = "\u2013"  # the dash the page shows for a value the list does not give


async def test_the_dashboard_shows_the_channels_and_their_sources_states(tmp_path: Path) -> None:
    listing = tmp_path / "list.m3u"
    listing.write_text(
        "#EXTM3U\n"
        f'#EXTINF:-1 tvg-id="one.uk" group-title="News",One\nacestream://{A}\n'
        f'#EXTINF:-1 tvg-id="one.uk",One backup\nacestream://{B}\n'
        f"#EXTINF:-1,<b>Two</b>\nacestream://{C}\n"
        "#EXTINF:-1,Nothing\nhttp://example.com/x.ts\n"
    )
    cfg = settings(channels_file=str(listing), hdhr_discovery=False)
    async with gateway(cfg) as server, chromium() as browser:
        service = server.app[CHANNELS]
        one, two = service.lineup.channels
        service.sources(one).failed(one.sources[0])
        service.sources(one).started(one.sources[1])
        service.sources(two).failed(two.sources[0])

        await browser.open(f"http://127.0.0.1:{server.port}/dashboard")
        await browser.text_of('#channels tbody tr [data-field="number"]', bool)
        rows = await browser.rows("#channels")
        assert [(r["number"], r["name"], r["group"], r["tvg_id"]) for r in rows] == [
            ("1", "One", "News", "one.uk"),
            ("2", "<b>Two</b>", NONE, NONE),  # names are text, never markup
        ]
        assert [r["players"] for r in rows] == ["0", "0"]
        assert rows[0]["sources"].startswith("aaaaaaaa… bad until ")
        assert rows[0]["sources"].endswith(" · bbbbbbbb… current")
        assert rows[1]["sources"].startswith("cccccccc… bad until ")
        second = await browser.element('#channels tbody tr[data-key="2"]')
        assert "state-unhealthy" in (second.get_attribute("class") or "")
        line = await browser.text_of("#channels-source", bool)
        assert line == f"{listing}: 2 channels, 1 entries skipped"
        assert severe(await browser.console()) == []


async def test_the_dashboard_shows_a_playing_channel_with_its_players_and_current_source(
    emulators: Callable[..., Emulator], tmp_path: Path
) -> None:
    engine = emulators(**FAST, unknown_ids=A)
    listing = tmp_path / "list.m3u"
    listing.write_text(
        f"#EXTM3U\n#EXTINF:-1,One\nacestream://{A}\n#EXTINF:-1,One\nacestream://{B}\n"
    )
    cfg = settings(channels_file=str(listing), hdhr_discovery=False)
    async with gateway(cfg, engine) as server, chromium() as browser:
        player = Player(f"http://127.0.0.1:{server.port}/channel/1")
        await player.receives(50 * 188)
        await browser.open(f"http://127.0.0.1:{server.port}/dashboard")
        await browser.text_of('#channels tbody tr [data-field="players"]', lambda t: t == "1")
        [row] = await browser.rows("#channels")
        assert row["sources"].startswith("aaaaaaaa… bad until ")
        assert row["sources"].endswith(" · bbbbbbbb… current")
        assert severe(await browser.console()) == []
        await player.close()
