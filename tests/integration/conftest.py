"""Fixtures of the Docker tests: every test gets a gateway instance name of its own, and every
container labelled with it (and the gateway container named after it) is removed afterwards."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.support import need_docker, remove_containers_of


@pytest.fixture
def instance() -> Iterator[str]:
    need_docker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["docker", "rm", "-f", f"gateway-{name}"], capture_output=True, check=False)
    remove_containers_of(name)
