"""Settings that would silently leave the gateway open, or protect nothing, stop it at start."""

from __future__ import annotations

import pytest

from acestream_gateway.settings import Settings
from tests.support import settings_errors


@pytest.mark.parametrize("variable", ["API_KEY", "PLAYER_TOKEN"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_key_or_token_is_refused_with_a_hint_to_unset_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    errors = settings_errors(monkeypatch, **{variable: value})
    assert len(errors) == 1
    assert errors[0].startswith(f"{variable}: ")
    assert "empty" in errors[0]
    assert "unset the variable" in errors[0]


def test_protect_reads_without_an_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = settings_errors(monkeypatch, PROTECT_READS="true")
    assert errors == ["PROTECT_READS=true needs API_KEY: without a key nothing is protected"]


def test_protect_reads_with_an_api_key_and_unset_secrets_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().api_key is None
    assert Settings().player_token is None
    monkeypatch.setenv("PROTECT_READS", "true")
    monkeypatch.setenv("API_KEY", "s3cret")
    settings = Settings()
    assert settings.protect_reads
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLAYER_LIMIT_IPV6_PREFIX", "0"),
        ("PLAYER_LIMIT_IPV6_PREFIX", "129"),
        ("CLIENT_HEADER_TIMEOUT_S", "0"),
        ("KEEPALIVE_TIMEOUT_S", "-1"),
        ("MAX_CONNECTIONS_PER_CLIENT", "0"),
    ],
)
def test_connection_and_client_limits_out_of_range_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    errors = settings_errors(monkeypatch, **{variable: value})
    assert len(errors) == 1
    assert errors[0].startswith(f"{variable}: ")


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, 172.16.0.0/12,fd00::/8")
    assert [str(n) for n in Settings().trusted_proxies] == [
        "10.0.0.1/32",
        "172.16.0.0/12",
        "fd00::/8",
    ]
    assert Settings().masked()["TRUSTED_PROXIES"] == "10.0.0.1/32,172.16.0.0/12,fd00::/8"
    errors = settings_errors(monkeypatch, TRUSTED_PROXIES="10.0.0.1,proxy.lan")
    assert errors == [
        "TRUSTED_PROXIES: 'proxy.lan' is not an IP address or network (got '10.0.0.1,proxy.lan')"
    ]
