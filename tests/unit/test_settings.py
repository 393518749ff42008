"""Settings: defaults work, every bad value is refused with a message naming its variable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from acestream_gateway.settings import PortRange, Settings
from tests.support import settings_errors


def test_defaults_work_out_of_the_box() -> None:
    settings = Settings()
    assert settings.min_replicas == 1
    assert settings.max_active_replicas == 20
    assert settings.port_range_host == PortRange((19000, 19999))
    assert settings.gateway_port == 8000
    assert settings.engine_host_address == "127.0.0.1"


def test_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_REPLICAS", "3")
    monkeypatch.setenv("MAX_ACTIVE_REPLICAS", "7")
    monkeypatch.setenv("PORT_RANGE_HOST", "20000-20010")
    monkeypatch.setenv("ENGINE_PRESET", "custom")
    monkeypatch.setenv("ENGINE_ARGS", "--client-console --http-port {port} --bind-all")
    monkeypatch.setenv("ENGINE_ENV", '{"P2P": "{port}"}')
    settings = Settings()
    assert (settings.min_replicas, settings.max_active_replicas) == (3, 7)
    assert (settings.port_range_host.lo, settings.port_range_host.hi) == (20000, 20010)
    launch = settings.engine_launch(20001)
    assert launch.command == ("--client-console", "--http-port", "20001", "--bind-all")
    assert launch.environment == {"P2P": "20001"}


def test_the_default_engine_image_gets_its_port_on_the_command_line_and_remote_access() -> None:
    launch = Settings().engine_launch(19000)
    assert launch.command == ("--http-port", "19000")
    assert launch.environment == {"ALLOW_REMOTE_ACCESS": "yes"}


def test_engine_args_and_env_add_to_the_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_ARGS", "--live-buffer 25")
    monkeypatch.setenv("ENGINE_ENV", '{"ALLOW_REMOTE_ACCESS": "no", "TZ": "UTC"}')
    launch = Settings().engine_launch(19000)
    assert launch.command == ("--http-port", "19000", "--live-buffer", "25")
    assert launch.environment == {"ALLOW_REMOTE_ACCESS": "no", "TZ": "UTC"}


def test_engine_preset_is_read_in_any_case_and_empty_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENGINE_PRESET", " JOPSIS ")
    assert Settings().engine_preset == "jopsis"
    monkeypatch.setenv("ENGINE_PRESET", "")
    assert Settings().engine_preset_choice()[0].name == "martinbjeldbak"


def test_an_unknown_preset_is_refused_naming_engine_preset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = settings_errors(monkeypatch, ENGINE_PRESET="gluetun")
    assert line == (
        "ENGINE_PRESET: must be one of martinbjeldbak, krinkuto11, jopsis, custom (got 'gluetun')"
    )


def test_engine_args_for_a_preset_whose_image_ignores_them_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = settings_errors(monkeypatch, ENGINE_PRESET="krinkuto11", ENGINE_ARGS="--bind-all")
    assert line.startswith("ENGINE_ARGS is ignored by images of ENGINE_PRESET=krinkuto11")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_min_replicas_below_one_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    (line,) = settings_errors(monkeypatch, MIN_REPLICAS=value)
    assert line.startswith("MIN_REPLICAS: must be >= 1")


def test_min_replicas_above_max_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = settings_errors(monkeypatch, MIN_REPLICAS="5", MAX_ACTIVE_REPLICAS="4")
    assert "MIN_REPLICAS (5) must not exceed MAX_ACTIVE_REPLICAS (4)" in line


@pytest.mark.parametrize("value", ["19000", "a-b", "20000-19000", "0-10", "1-70000", "1--2"])
def test_malformed_port_range_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    (line,) = settings_errors(monkeypatch, PORT_RANGE_HOST=value)
    assert line.startswith("PORT_RANGE_HOST:")


def test_port_range_smaller_than_the_fleet_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = settings_errors(monkeypatch, PORT_RANGE_HOST="19000-19004", MAX_ACTIVE_REPLICAS="6")
    assert "has 5 ports, fewer than MAX_ACTIVE_REPLICAS (6)" in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_ACTIVE_REPLICAS", "zero"),
        ("MAX_STREAMS_PER_ENGINE", "0"),
        ("GATEWAY_PORT", "70000"),
        ("ENGINE_ARGS", "--http-port {prot}"),
        ("ENGINE_ARGS", "--cache-dir '/tmp"),
        ("ENGINE_PRESET", "acestream"),
        ("ENGINE_ENV", "not json"),
        ("ENGINE_ENV", '{"HTTP_PORT": "{http_port}"}'),
        ("LOG_LEVEL", "loud"),
        ("GATEWAY_INSTANCE_NAME", "two words"),
        ("STALL_TIMEOUT_S", "-1"),
    ],
)
def test_each_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    lines = settings_errors(monkeypatch, **{name: value})
    assert any(line.startswith(f"{name}:") for line in lines), lines


def test_secrets_are_masked_when_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "s3cret")
    shown = Settings().masked()
    assert shown["API_KEY"] == "********"
    assert shown["PORT_RANGE_HOST"] == "19000-19999"
    assert "s3cret" not in repr(shown)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acestream_gateway", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_value_stops_the_process_with_one_line_and_no_traceback() -> None:
    result = run_cli("check-config", env={"MIN_REPLICAS": "0"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "acestream-gateway: configuration error: MIN_REPLICAS: must be >= 1: "
        "the gateway always keeps an empty engine, got 0 (got '0')"
    ]
    assert "Traceback" not in result.stderr


def test_check_config_prints_the_effective_configuration() -> None:
    result = run_cli("check-config", env={"API_KEY": "hunter2", "MIN_REPLICAS": "2"})
    assert result.returncode == 0, result.stderr
    assert '"MIN_REPLICAS": 2' in result.stdout
    assert "hunter2" not in result.stdout


def test_check_config_shows_the_effective_preset_command_and_environment() -> None:
    env = {"ENGINE_IMAGE": "jopsis/acestream:x64", "ENGINE_ARGS": "--live-buffer 25"}
    result = run_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ENGINE_PRESET"] == "jopsis"
    effective = shown["ENGINE_LAUNCH (effective)"]
    assert effective["chosen_by"] == "ENGINE_IMAGE"
    assert effective["command"] == "the image's own"
    assert effective["environment"] == {
        "ACESTREAM_ARGS": "--client-console --bind-all --http-port {port} --live-buffer 25"
    }


def test_version_is_printed() -> None:
    result = run_cli("--version", env={})
    assert result.returncode == 0
    assert result.stdout.startswith("acestream-gateway ")


@pytest.mark.parametrize(
    "value", ["tv.example.org", "ftp://x", "http://user:pw@tv.example.org", "http://a b"]
)
def test_public_base_url_must_be_a_plain_http_url(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(public_base_url=value)
    assert Settings(public_base_url="https://tv.example.org:8443/gw").public_base_url
