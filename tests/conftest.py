"""Fixtures of every test: each test's gateways keep their state (the session journal) in a
directory of the test's own, so tests running side by side never read each other's journal."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """STATE_DIR for the gateways the test makes (in-process, or processes it starts).

    Set by hand rather than through ``monkeypatch``: an autouse fixture that took ``monkeypatch``
    would make every test's ``monkeypatch`` outlive its other fixtures, whose teardown would then
    still see the test's changes (a ``DOCKER_HOST`` pointing at a proxy that is gone)."""
    path = tmp_path_factory.mktemp("state")
    before = os.environ.get("STATE_DIR")
    os.environ["STATE_DIR"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("STATE_DIR", None)
        else:
            os.environ["STATE_DIR"] = before
