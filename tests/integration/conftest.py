"""Fixtures of the integration tests: engine emulators as local processes, and for Docker tests a
gateway instance name of its own per test (every container labelled with it, and the gateway
container named after it, is removed afterwards)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.local import Emulator
from tests.support import need_docker, remove_containers_of


@pytest.fixture
def instance() -> Iterator[str]:
    need_docker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(
        ["docker", "rm", "-f", "-v", f"gateway-{name}"], capture_output=True, check=False
    )
    remove_containers_of(name)


@pytest.fixture
def emulators() -> Iterator[Callable[..., Emulator]]:
    """Start engine emulators as local processes (knobs as keyword arguments); all are stopped
    when the test ends."""
    started: list[Emulator] = []

    def start(**knobs: str) -> Emulator:
        emulator = Emulator(**knobs)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
