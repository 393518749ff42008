"""The compose files users deploy with: valid for docker-compose, deploying the gateway the same
way in both, with settings the gateway accepts and that fit the real engine image and Gluetun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, need_docker_compose

COMPOSE = ROOT / "deploy" / "compose.yaml"
COMPOSE_GLUETUN = ROOT / "deploy" / "compose.gluetun.yaml"
GATEWAY = "acestream-gateway"
REAL_ENGINE_IMAGE = "ghcr.io/martinbjeldbak/acestream-http-proxy:latest"


def _output(argv: list[str], env: dict[str, str] | None = None) -> str:
    """What ``argv`` prints, run from the repository; it must succeed."""
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def compose_config(path: Path) -> dict[str, Any]:
    """The file as docker-compose reads it (``config`` validates it and prints it normalised)."""
    config: dict[str, Any] = yaml.safe_load(
        _output([need_docker_compose(), "--file", str(path), "config"])
    )
    return config


def gateway_service(path: Path) -> dict[str, Any]:
    service: dict[str, Any] = compose_config(path)["services"][GATEWAY]
    return service


def check_config(environment: dict[str, str]) -> dict[str, Any]:
    """``acestream-gateway check-config`` with exactly a service's environment."""
    effective: dict[str, Any] = json.loads(
        _output(
            [sys.executable, "-m", "acestream_gateway", "check-config"],
            env={"PATH": "/usr/bin:/bin", **environment},
        )
    )
    return effective


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GLUETUN], ids=lambda p: p.name)
def test_docker_compose_accepts_the_file(path: Path) -> None:
    assert GATEWAY in compose_config(path)["services"]


def test_both_files_deploy_the_gateway_container_the_same_way() -> None:
    plain, vpn = gateway_service(COMPOSE), gateway_service(COMPOSE_GLUETUN)
    same = ("image", "container_name", "restart", "network_mode", "volumes")
    assert {k: plain[k] for k in same} == {k: vpn[k] for k in same}
    hardening = ("cap_drop", "cap_add", "security_opt")
    assert {k: plain[k] for k in hardening} == {k: vpn[k] for k in hardening}
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in plain["volumes"]
    shared = plain["environment"].keys() & vpn["environment"].keys()
    assert {"GATEWAY_PORT", "ENGINE_IMAGE", "MAX_STREAMS_PER_ENGINE"} <= shared
    differ = {k for k in shared if plain["environment"][k] != vpn["environment"][k]}
    assert differ == {"PORT_RANGE_HOST"}  # Gluetun publishes a small range, see its file


def test_the_gateway_drops_every_capability_but_the_two_its_entrypoint_needs() -> None:
    service = gateway_service(COMPOSE)
    assert service["cap_drop"] == ["ALL"]
    assert sorted(service["cap_add"]) == ["SETGID", "SETUID"]
    assert service["security_opt"] == ["no-new-privileges:true"]


def test_compose_yaml_runs_the_real_engine_image_with_its_preset() -> None:
    environment = gateway_service(COMPOSE)["environment"]
    assert environment["ENGINE_IMAGE"] == REAL_ENGINE_IMAGE
    effective = check_config(environment)
    launch = effective["ENGINE_LAUNCH (effective)"]
    assert (launch["preset"], launch["chosen_by"]) == ("martinbjeldbak", "ENGINE_IMAGE")
    assert effective["FLEET (effective)"]["kind"] == "docker"


def test_compose_gluetun_publishes_the_engine_range_and_the_control_server_it_names() -> None:
    services = compose_config(COMPOSE_GLUETUN)["services"]
    gluetun, environment = services["gluetun"], services[GATEWAY]["environment"]
    assert services[GATEWAY]["depends_on"]["gluetun"]["condition"] == "service_healthy"
    assert environment["GLUETUN_CONTAINER_NAME"] == gluetun["container_name"]
    published = {(p["target"], p["published"]) for p in map(port_mapping, gluetun["ports"])}
    lo, hi = map(int, environment["PORT_RANGE_HOST"].split("-"))
    assert {(port, port) for port in range(lo, hi + 1)} <= published
    control_port = int(environment["GLUETUN_API_URL"].rsplit(":", 1)[1])
    assert (8000, control_port) in published
    role = json.loads(gluetun["environment"]["HTTP_CONTROL_SERVER_AUTH_DEFAULT_ROLE"])
    assert role["apikey"] == environment["GLUETUN_API_KEY"]
    effective = check_config(environment)
    assert effective["ENGINE_LAUNCH (effective)"]["preset"] == "martinbjeldbak"


def port_mapping(entry: Any) -> dict[str, int]:
    """One published port of ``docker-compose config`` (short ``ip:host:container`` syntax or
    the long form), as ``{"target", "published"}``."""
    if isinstance(entry, dict):
        return {"target": int(entry["target"]), "published": int(entry["published"])}
    *_, published, target = str(entry).removesuffix("/tcp").split(":")
    return {"target": int(target), "published": int(published)}
