"""Logging: JSON lines when not on a terminal, with bound ids; stdlib loggers in the same form."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from acestream_gateway.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_events_are_json_lines_with_bound_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    structlog.contextvars.bind_contextvars(request_id="r1")
    get_logger("acestream_gateway.test").info("engine_started", engine="e1", port=19000)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "engine_started"
    assert line["engine"] == "e1"
    assert line["request_id"] == "r1"
    assert line["level"] == "info"
    assert "timestamp" in line


def test_standard_library_loggers_use_the_same_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("aiodocker.docker").warning("daemon %s", "gone")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "daemon gone"
    assert line["logger"] == "aiodocker.docker"
    assert line["level"] == "warning"


def test_the_level_filters_events(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "json")
    get_logger("x").info("quiet")
    get_logger("x").warning("loud")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["loud"]


def test_console_lines_cannot_be_forged_by_text_from_outside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "console")
    forged = "/x\n2026-01-01 [info     ] engine_started\x1b[2J\u2028"
    get_logger("acestream_gateway.test").info("player_joining", path=forged)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "\x1b" not in err
    assert "\\n2026-01-01" in err
