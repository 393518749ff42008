"""Fixtures of every test: each test's gateways keep their state (the session journal) in a
directory of the test's own, so tests running side by side never read each other's journal."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STATE_DIR for the gateways the test makes (in-process, or processes it starts)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("STATE_DIR", str(path))
    return path
