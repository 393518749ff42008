"""VPN mode settings: each VPN named, each engine told its own P2P port, bad combinations refused
at start with a line naming the variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.presets import EnginePorts
from acestream_gateway.settings import PortRange, Settings
from tests.support import settings_errors


def test_without_a_vpn_engines_keep_the_commands_they_had() -> None:
    settings = Settings()
    assert not settings.vpn_mode
    assert settings.engine_launch(19000).command == ("--http-port", "19000")


def test_a_comma_separated_list_names_several_vpn_containers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GLUETUN_CONTAINER_NAME", " gluetun-a, gluetun-b ,")
    monkeypatch.setenv("GLUETUN_API_URL", "http://10.0.0.2:8000/, http://10.0.0.3:8000")
    settings = Settings()
    assert settings.gluetun_container_name == ("gluetun-a", "gluetun-b")
    assert settings.gluetun_api_url == ("http://10.0.0.2:8000", "http://10.0.0.3:8000")
    assert settings.masked()["GLUETUN_CONTAINER_NAME"] == "gluetun-a,gluetun-b"


def test_behind_a_vpn_the_default_image_gets_its_own_p2p_port_after_the_http_range() -> None:
    settings = Settings(
        gluetun_container_name="gluetun", port_range_host="19000-19009", max_active_replicas=10
    )
    assert settings.p2p_ports() == PortRange((19010, 19019))
    launch = settings.engine_launch(19003)
    assert launch.command == ("--http-port", "19003", "--port", "19013")


def test_behind_a_vpn_jopsis_gets_its_p2p_port_in_its_argument_variable() -> None:
    settings = Settings(
        gluetun_container_name="gluetun", engine_preset="jopsis", p2p_port_range="30000-30999"
    )
    launch = settings.engine_launch(19001)
    assert launch.environment["ACESTREAM_ARGS"].endswith("--http-port 19001 --port 30001")


def test_a_forwarded_port_replaces_the_engines_own_p2p_port() -> None:
    settings = Settings(gluetun_container_name="gluetun")
    assert settings.engine_launch(19000, 45678).command[-2:] == ("--port", "45678")


@given(size=st.integers(1, 500), index=st.integers(0, 499))
def test_every_engine_of_the_range_gets_a_p2p_port_of_its_own(size: int, index: int) -> None:
    settings = Settings(
        gluetun_container_name="gluetun",
        port_range_host=f"20000-{20000 + size - 1}",
        max_active_replicas=1,
    )
    port = 20000 + index % size
    p2p = settings.p2p_port(port)
    assert p2p in settings.p2p_ports()
    assert p2p not in settings.port_range_host
    assert p2p - settings.p2p_ports().lo == port - settings.port_range_host.lo


def test_an_image_that_cannot_be_told_a_p2p_port_is_refused_behind_a_vpn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = settings_errors(
        monkeypatch, GLUETUN_CONTAINER_NAME="gluetun", ENGINE_PRESET="krinkuto11"
    )
    assert "ENGINE_PRESET=krinkuto11" in line
    assert "GLUETUN_CONTAINER_NAME" in line


def test_custom_engine_args_without_a_p2p_port_are_refused_behind_a_vpn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = settings_errors(
        monkeypatch,
        GLUETUN_CONTAINER_NAME="gluetun",
        ENGINE_PRESET="custom",
        ENGINE_ARGS="--http-port {port}",
    )
    assert "{p2p_port}" in line


def test_custom_engine_env_may_carry_the_p2p_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUETUN_CONTAINER_NAME", "gluetun")
    monkeypatch.setenv("ENGINE_PRESET", "custom")
    monkeypatch.setenv("ENGINE_ENV", '{"P2P": "{p2p_port}", "HTTP": "{port}"}')
    assert Settings().engine_launch(19000).environment == {"P2P": "20000", "HTTP": "19000"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GLUETUN_CONTAINER_NAME": "a,a"}, "GLUETUN_CONTAINER_NAME"),
        ({"GLUETUN_CONTAINER_NAME": "a b"}, "GLUETUN_CONTAINER_NAME"),
        ({"GLUETUN_CONTAINER_NAME": "a", "GLUETUN_API_URL": "ftp://x"}, "GLUETUN_API_URL"),
        ({"GLUETUN_CONTAINER_NAME": "a,b", "GLUETUN_API_URL": "http://x:1"}, "GLUETUN_API_URL"),
        ({"GLUETUN_CONTAINER_NAME": "a", "P2P_PORT_RANGE": "19500-20600"}, "P2P_PORT_RANGE"),
        ({"GLUETUN_CONTAINER_NAME": "a", "P2P_PORT_RANGE": "30000-30010"}, "P2P_PORT_RANGE"),
        (
            {"GLUETUN_CONTAINER_NAME": "a", "PORT_RANGE_HOST": "60000-65000"},
            "P2P_PORT_RANGE",
        ),
        (
            {"GLUETUN_CONTAINER_NAME": "a,b,c", "PORT_RANGE_HOST": "19000-19001"},
            "PORT_RANGE_HOST",
        ),
        ({"P2P_PORT_RANGE": "1-2-3"}, "P2P_PORT_RANGE"),
    ],
)
def test_bad_vpn_settings_are_refused_with_a_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("MAX_ACTIVE_REPLICAS", "2")
    lines = settings_errors(monkeypatch, **env)
    assert any(named in line for line in lines), lines


def test_the_p2p_port_placeholder_renders_beside_the_http_port() -> None:
    assert EnginePorts(1).p2p_port == 8621  # alone in its container: the engine's default
