"""Docker endpoints: DOCKER_ENDPOINTS parsing, the placement policy and the shared slots."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from acestream_gateway.fleet.endpoints import EndpointRoom, choose_endpoint, spread
from acestream_gateway.fleet.specs import LABEL_ENDPOINT, container_name, instance_filter, labels
from acestream_gateway.settings import Settings, describe_errors


def endpoints_setting(*items: Mapping[str, object]) -> Settings:
    return Settings(docker_endpoints=json.dumps([dict(i) for i in items]))


def one_line_error(*items: Mapping[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        endpoints_setting(*items)
    [line] = describe_errors(caught.value)
    return line


LOCAL: dict[str, object] = {
    "name": "here",
    "url": "unix:///var/run/docker.sock",
    "ports": "19000-19009",
}


def test_unset_gives_one_endpoint_from_todays_settings() -> None:
    settings = Settings(port_range_host="20000-20099", engine_host_address="10.0.0.5")
    [endpoint] = settings.endpoints()
    assert (endpoint.url, endpoint.ports, endpoint.engine_host) == (
        None,
        (20000, 20099),
        "10.0.0.5",
    )
    assert not endpoint.named
    assert settings.for_endpoint(endpoint) is settings, "the default view is today's settings"


def test_a_named_endpoint_sees_its_own_ports_host_and_label() -> None:
    remote = {
        "name": "box2",
        "url": "tcp://127.0.0.2:2376",
        "tls": False,
        "engine_host": "127.0.0.2",
        "ports": "21000-21004",
        "max_engines": 3,
    }
    settings = endpoints_setting(LOCAL, remote)
    here, box2 = settings.endpoints()
    assert (here.max_engines, box2.max_engines) == (10, 3), "max_engines defaults to its ports"
    view = settings.for_endpoint(box2)
    assert (view.port_range_host.lo, view.port_range_host.hi) == (21000, 21004)
    assert view.engine_host_address == "127.0.0.2"
    assert f"{LABEL_ENDPOINT}=box2" in instance_filter(view)["label"]
    assert labels(view, 21000)[LABEL_ENDPOINT] == "box2"
    assert "box2" in container_name(view, 21000)
    assert settings.endpoint_name is None
    assert LABEL_ENDPOINT not in labels(settings, 19000)


def test_a_tcp_endpoint_without_tls_written_out_is_refused_naming_it() -> None:
    line = one_line_error({"name": "open", "url": "tcp://127.0.0.2:2375", "ports": "1-2"})
    assert line.startswith("DOCKER_ENDPOINTS: endpoint 'open':")
    assert '"tls": false' in line


def test_missing_certificate_files_are_refused_naming_the_endpoint(tmp_path: Path) -> None:
    tls = {"ca": str(tmp_path / "ca.pem"), "cert": str(tmp_path / "c.pem"), "key": "k.pem"}
    item = {"name": "far", "url": "tcp://h:2376", "tls": tls, "engine_host": "h", "ports": "1-2"}
    line = one_line_error(item)
    assert "endpoint 'far'" in line
    assert "ca.pem" in line


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({**LOCAL, "url": "http://x"}, "'url'"),
        ({**LOCAL, "ports": "9-1"}, "lo <= hi"),
        ({**LOCAL, "max_engines": 11}, "exceeds its 10 ports"),
        ({**LOCAL, "colour": "blue"}, "unknown keys"),
        ({"name": "far", "url": "tcp://h:1", "tls": False, "ports": "1-2"}, "engine_host"),
    ],
)
def test_each_mistake_is_one_line_naming_the_endpoint(item: dict[str, object], words: str) -> None:
    line = one_line_error(item)
    assert f"endpoint {item['name']!r}" in line, line
    assert words in line, line


def test_two_endpoints_of_one_name_are_refused() -> None:
    assert "appears twice" in one_line_error(LOCAL, LOCAL)


def test_placement_takes_the_most_free_room_then_the_earliest() -> None:
    rooms = [EndpointRoom("a", True, 2), EndpointRoom("b", True, 5), EndpointRoom("c", True, 5)]
    assert choose_endpoint(rooms) == "b"
    assert choose_endpoint([EndpointRoom("a", False, 9), EndpointRoom("b", True, 1)]) == "b"
    assert choose_endpoint([EndpointRoom("a", False, 9), EndpointRoom("b", True, 0)]) is None


rooms_strategy = st.lists(st.tuples(st.booleans(), st.integers(0, 8)), min_size=1, max_size=5).map(
    lambda xs: [EndpointRoom(f"e{n}", up, free) for n, (up, free) in enumerate(xs)]
)


@given(rooms_strategy, st.integers(0, 30), st.integers(0, 30))
def test_spread_respects_every_share_the_total_and_reachability(
    rooms: list[EndpointRoom], wanted: int, total_room: int
) -> None:
    counts = spread(rooms, wanted, total_room)
    by_name = {r.name: r for r in rooms}
    assert sum(counts.values()) <= min(wanted, total_room)
    for name, count in counts.items():
        assert by_name[name].reachable
        assert count <= by_name[name].free
    usable = sum(r.free for r in rooms if r.reachable)
    assert sum(counts.values()) == min(wanted, total_room, usable), "no room is left unused"


@given(rooms_strategy)
def test_the_chosen_endpoint_has_no_less_room_than_any_other_usable_one(
    rooms: list[EndpointRoom],
) -> None:
    chosen = choose_endpoint(rooms)
    usable = [r for r in rooms if r.reachable and r.free > 0]
    if not usable:
        assert chosen is None
        return
    best = next(r for r in rooms if r.name == chosen)
    assert all(best.free >= r.free for r in usable)
    assert chosen == next(r.name for r in usable if r.free == best.free), "ties go by order"


VPN_BOX: dict[str, object] = {
    "name": "vpnbox",
    "url": "tcp://127.0.0.2:2376",
    "tls": False,
    "engine_host": "127.0.0.2",
    "ports": "21000-21009",
    "gluetun_container_name": ["g1", "g2"],
}


def test_an_endpoint_with_vpns_of_its_own_is_checked_as_vpn_mode_on_its_own_ports() -> None:
    settings = endpoints_setting(LOCAL, VPN_BOX)
    view = settings.for_endpoint(settings.endpoints()[1])
    assert view.vpn_mode
    assert not settings.vpn_mode
    assert view.p2p_ports().lo > 21009, "its P2P ports follow its own HTTP ports"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"ports": "21000-21000"}, "its 'ports' (21000-21000) has fewer ports than"),
        ({}, "overlaps its 'ports' (21000-21009)"),
    ],
)
def test_an_endpoints_vpns_that_cannot_fit_are_one_line_naming_it(
    change: dict[str, object], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not change:
        monkeypatch.setenv("P2P_PORT_RANGE", "21005-21020")
    line = one_line_error(LOCAL, {**VPN_BOX, **change})
    assert line.startswith("DOCKER_ENDPOINTS: endpoint 'vpnbox':")
    assert words in line
