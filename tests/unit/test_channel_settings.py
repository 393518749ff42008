"""The channel list's settings: checked at start with one line, and summed up by check-config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from acestream_gateway.settings import Settings
from tests.unit.test_settings import run_cli

A, B = "a" * 40, "b" * 40


def test_check_config_prints_the_lineup_summary(tmp_path: Path) -> None:
    listing = tmp_path / "list.m3u"
    listing.write_text(
        '#EXTM3U url-tvg="http://guide.example/g.xml"\n'
        f'#EXTINF:-1 tvg-chno="3",One\nacestream://{A}\n'
        f'#EXTINF:-1 tvg-chno="3",Two\nacestream://{B}\n'
        f"#EXTINF:-1,One\n{B}\n"
        "#EXTINF:-1,Web\nhttp://example.com/x.ts\n"
    )
    result = run_cli("check-config", env={"CHANNELS_FILE": str(listing)})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["CHANNELS (effective)"]
    assert summary == {
        "location": str(listing),
        "channels": 2,
        "sources": 3,
        "numbers": [3, 4],
        "skipped": 1,
        "skipped_first": ["line 8: not an AceStream source: 'http://example.com/x.ts'"],
        "number_clashes": ["tvg-chno 3 kept by name:one; name:two got 4"],
        "guide": "http://guide.example/g.xml",
    }


def test_check_config_says_why_a_list_cannot_be_read(tmp_path: Path) -> None:
    listing = tmp_path / "list.m3u"
    listing.write_bytes(b"\x00\xff binary")
    result = run_cli("check-config", env={"CHANNELS_FILE": str(listing)})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["CHANNELS (effective)"]
    assert summary["error"] == "not an M3U playlist: binary data (NUL bytes)"


def test_a_missing_channels_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    result = run_cli("check-config", env={"CHANNELS_FILE": str(tmp_path / "nope.m3u")})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("acestream-gateway: configuration error: CHANNELS_FILE: ")
    assert "is not a file" in line


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"channels_url": "ftp://x/list.m3u"}, "channels_url"),
        ({"epg_url": "file:///etc/passwd"}, "epg_url"),
        ({"channels_url": "http://x/a.m3u", "channels_file": __file__}, "not both"),
        ({"epg_url": "http://x/a.xml", "epg_file": __file__}, "not both"),
        ({"hdhr_tuner_count": 0}, "hdhr_tuner_count"),
        ({"channels_refresh_s": 0}, "channels_refresh_s"),
    ],
)
def test_bad_channel_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


def test_empty_channel_settings_mean_unset() -> None:
    settings = Settings(channels_file="", channels_url=" ", epg_url="", hdhr_device_id="")
    assert settings.channels_location is None
    assert settings.guide_location is None
    assert settings.hdhr_device_id is None
