"""ENGINE_URLS: each URL says where an engine answers and nothing else, each engine is named after
its URL, and a bad list stops the gateway at start with one line naming ENGINE_URLS."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from acestream_gateway.engine_urls import EngineUrl, parse_engine_urls
from acestream_gateway.settings import Settings, describe_errors
from tests.unit.test_settings import run_cli

hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True),
    st.ip_addresses().map(str),
)
urls = st.builds(EngineUrl, host=hosts, port=st.integers(1, 65535))


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("http://127.0.0.1:6878", "127.0.0.1", 6878),
        ("http://nas.local:6878/", "nas.local", 6878),
        ("  http://NAS.Local:6878  ", "nas.local", 6878),
        ("http://[::1]:6879", "::1", 6879),
        ("http://[0:0::1]:6879/", "::1", 6879),
    ],
)
def test_a_url_with_host_and_port_is_accepted_in_its_usual_spellings(
    text: str, host: str, port: int
) -> None:
    assert EngineUrl.parse(text) == EngineUrl(host, port)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("https://nas:6878", "must start with http://"),
        ("nas:6878", "must start with http://"),
        ("http://nas", "must give a port"),
        ("http://nas:", "must give a port"),
        ("http://nas:0", "must give a port"),
        ("http://nas:70000", "is not a URL"),
        ("http://nas:port", "is not a URL"),
        ("http://:6878", "must name a host"),
        ("http://n a s:6878", "must name a host"),
        ("http://nas:6878/ace", "must have no path"),
        ("http://nas:6878/?x=1", "must have no path"),
        ("http://nas:6878/#top", "must have no path"),
        ("http://user:pw@nas:6878", "must not carry a user or password"),
    ],
)
def test_a_url_that_is_not_exactly_where_an_engine_answers_is_refused(
    text: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        EngineUrl.parse(text)


def test_a_list_is_comma_separated_and_keeps_its_order() -> None:
    assert parse_engine_urls("http://b:2, http://a:1") == (EngineUrl("b", 2), EngineUrl("a", 1))


def test_an_empty_list_means_no_static_fleet() -> None:
    assert parse_engine_urls("") == ()
    assert parse_engine_urls("  ") == ()


@pytest.mark.parametrize(
    "text", ["http://a:1,http://a:1", "http://a:1,http://A:1/", "http://[::1]:1,http://[0::1]:1"]
)
def test_one_engine_listed_twice_is_refused_whatever_the_spelling(text: str) -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_engine_urls(text)


def test_an_empty_entry_is_refused_with_its_place() -> None:
    with pytest.raises(ValueError, match="entry 2 is empty"):
        parse_engine_urls("http://a:1,,http://b:2")


@given(urls)
def test_a_url_reads_back_as_itself(url: EngineUrl) -> None:
    assert EngineUrl.parse(str(url)) == url


@given(urls, urls)
def test_distinct_urls_never_share_a_name(a: EngineUrl, b: EngineUrl) -> None:
    assume(a != b)
    assert a.name != b.name


def test_names_say_host_and_port() -> None:
    assert EngineUrl.parse("http://127.0.0.1:6878").name == "static-127.0.0.1-6878"


@pytest.mark.parametrize("value", ["http://a", "http://a:1,http://a:1", "ftp://a:1"])
def test_a_bad_list_is_one_line_naming_engine_urls(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ENGINE_URLS", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    (line,) = describe_errors(caught.value)
    assert line.startswith("ENGINE_URLS: ")


def test_with_engine_urls_the_docker_fleet_limits_are_not_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENGINE_URLS", "http://127.0.0.1:6878")
    monkeypatch.setenv("PORT_RANGE_HOST", "19000-19001")
    monkeypatch.setenv("MIN_REPLICAS", "5")
    monkeypatch.setenv("MAX_ACTIVE_REPLICAS", "4")
    settings = Settings()
    assert settings.static_fleet
    assert settings.engine_urls == (EngineUrl("127.0.0.1", 6878),)


def test_without_engine_urls_the_fleet_is_dockers() -> None:
    assert not Settings().static_fleet
    assert Settings().masked()["FLEET (effective)"] == {
        "kind": "docker",
        "engines": "containers the gateway starts and removes",
    }


def test_check_config_shows_the_static_engines_and_what_does_not_apply() -> None:
    env = {"ENGINE_URLS": "http://127.0.0.1:6878,http://[::1]:6879/"}
    result = run_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ENGINE_URLS"] == "http://127.0.0.1:6878,http://[::1]:6879"
    fleet = shown["FLEET (effective)"]
    assert fleet["kind"] == "static"
    assert fleet["engines"] == {
        "static-127.0.0.1-6878": "http://127.0.0.1:6878",
        "static-::1-6879": "http://[::1]:6879",
    }
    assert {"MIN_REPLICAS", "MAX_ACTIVE_REPLICAS", "PORT_RANGE_HOST"} <= set(fleet["not_applying"])
    assert "MAX_STREAMS_PER_ENGINE" not in fleet["not_applying"]
    assert "ENGINE_LAUNCH (effective)" not in shown, "no engine is launched"
