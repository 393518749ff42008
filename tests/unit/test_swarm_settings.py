"""FLEET_BACKEND and SWARM_CONSTRAINTS: the default is today's Docker fleet, and a Swarm fleet
that cannot be is refused at start in one line."""

from __future__ import annotations

import json

import pytest

from acestream_gateway.settings import Settings
from tests.support import settings_errors


def test_the_default_backend_is_docker_with_no_constraints() -> None:
    settings = Settings()
    assert settings.fleet_backend == "docker"
    assert settings.swarm_constraints == ""


def test_a_swarm_backend_with_docker_endpoints_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = {"name": "a", "url": "unix:///var/run/docker.sock", "ports": "19000-19009"}
    errors = settings_errors(
        monkeypatch, FLEET_BACKEND="swarm", DOCKER_ENDPOINTS=json.dumps([endpoint])
    )
    assert len(errors) == 1
    assert "unset DOCKER_ENDPOINTS" in errors[0]


def test_a_swarm_backend_behind_a_vpn_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = settings_errors(monkeypatch, FLEET_BACKEND="swarm", GLUETUN_CONTAINER_NAME="gluetun")
    assert len(errors) == 1
    assert "VPN" in errors[0]


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = settings_errors(monkeypatch, FLEET_BACKEND="kubernetes")
    assert len(errors) == 1
    assert "FLEET_BACKEND" in errors[0]
