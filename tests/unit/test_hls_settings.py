"""The HLS settings: defaults that work, and values that cannot be refused at start with one
line naming the variable."""

from __future__ import annotations

import pytest

from acestream_gateway.settings import Settings
from tests.support import settings_errors


def test_hls_defaults_are_a_six_segment_window_of_four_seconds_held_thirty() -> None:
    settings = Settings()
    assert (settings.hls_window, settings.hls_segment_s, settings.hls_idle_s) == (6, 4.0, 30.0)


@pytest.mark.parametrize(
    ("name", "value", "start"),
    [
        ("HLS_WINDOW", "2", "HLS_WINDOW: Input should be greater than or equal to 3"),
        ("HLS_SEGMENT_S", "0.5", "HLS_SEGMENT_S: Input should be greater than or equal to 1"),
        ("HLS_SEGMENT_S", "60", "HLS_SEGMENT_S: Input should be less than or equal to 30"),
        ("HLS_IDLE_S", "0", "HLS_IDLE_S: Input should be greater than 0"),
    ],
)
def test_hls_values_that_cannot_work_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, start: str
) -> None:
    (line,) = settings_errors(monkeypatch, **{name: value})
    assert line.startswith(start), line


def test_an_hls_hold_shorter_than_two_segments_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = settings_errors(monkeypatch, HLS_SEGMENT_S="4", HLS_IDLE_S="6")
    assert "HLS_IDLE_S must be at least twice HLS_SEGMENT_S" in line, line
