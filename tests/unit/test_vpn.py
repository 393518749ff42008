"""VPN containers as Docker inspects them, and the verdicts on them: connected or why not, which
ports they publish, where an engine behind them answers, and whether an engine is stranded."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.model import EngineAddress
from acestream_gateway.fleet.gluetun import forwarded_port
from acestream_gateway.fleet.vpn import (
    Binding,
    Tunnel,
    VpnContainer,
    address_behind,
    describe_ports,
    disconnected_reason,
    missing_ports,
    namespace_labels,
    split_range,
    stranded_reason,
    unpublished_message,
    vpn_from_inspect,
)
from acestream_gateway.settings import PortRange


def inspected(**state: Any) -> dict[str, Any]:
    return {
        "Id": "abc123",
        "State": {"Running": True, "StartedAt": "2026-12-01T10:00:00.1Z", **state},
        "NetworkSettings": {
            "Ports": {
                "8000/tcp": [
                    {"HostIp": "::", "HostPort": "41000"},
                    {"HostIp": "0.0.0.0", "HostPort": "41000"},
                ],
                "19000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "29000"}],
                "19001/udp": [{"HostIp": "127.0.0.1", "HostPort": "29001"}],
                "19002/tcp": None,
            }
        },
        "HostConfig": {"PortBindings": {"19005/tcp": [{"HostIp": "", "HostPort": "19005"}]}},
    }


def vpn(**fields: Any) -> VpnContainer:
    values: dict[str, Any] = {
        "name": "gluetun",
        "id": "abc123",
        "running": True,
        "started_at": "t1",
        "bindings": {p: Binding("127.0.0.1", p) for p in range(19000, 19005)},
        **fields,
    }
    return VpnContainer(**values)


def test_a_running_vpn_publishes_the_tcp_ports_docker_bound_ipv4_first() -> None:
    container = vpn_from_inspect("gluetun", inspected())
    assert container.running
    assert container.health is None
    assert container.bindings == {
        8000: Binding("0.0.0.0", 41000),
        19000: Binding("127.0.0.1", 29000),
    }


def test_a_stopped_vpn_publishes_what_it_asks_for() -> None:
    container = vpn_from_inspect("gluetun", inspected(Running=False))
    assert not container.running
    assert container.bindings == {19005: Binding("", 19005)}


def test_the_docker_health_check_status_is_read() -> None:
    container = vpn_from_inspect("gluetun", inspected(Health={"Status": "unhealthy"}))
    assert container.health == "unhealthy"


def test_a_running_vpn_without_health_check_or_control_server_is_connected() -> None:
    assert disconnected_reason(vpn(), Tunnel()) is None


def test_a_healthy_vpn_whose_tunnel_runs_is_connected() -> None:
    assert disconnected_reason(vpn(health="healthy"), Tunnel("running", 5914)) is None


def test_each_missing_condition_is_a_reason_to_be_disconnected() -> None:
    assert disconnected_reason(None, Tunnel()) == "its container does not exist"
    assert "not running" in str(disconnected_reason(vpn(running=False), Tunnel("running")))
    assert "starting" in str(disconnected_reason(vpn(health="starting"), Tunnel()))
    assert "unhealthy" in str(disconnected_reason(vpn(health="unhealthy"), Tunnel("running")))
    assert "stopped" in str(disconnected_reason(vpn(health="healthy"), Tunnel("stopped")))


@given(lo=st.integers(1, 60000), size=st.integers(1, 3000), count=st.integers(1, 20))
def test_the_range_is_split_into_consecutive_shares_of_nearly_equal_size(
    lo: int, size: int, count: int
) -> None:
    ports = PortRange((lo, min(65535, lo + size - 1)))
    if count > len(ports):
        return
    shares = split_range(ports, count)
    assert len(shares) == count
    covered = [p for share in shares for p in share.ports()]
    assert covered == list(ports.ports())
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_ports_a_vpn_does_not_publish_are_named_in_one_line() -> None:
    container = vpn(bindings={19000: Binding("", 19000), 19003: Binding("", 19003)})
    share = PortRange((19000, 19005))
    missing = missing_ports(container, share)
    assert missing == [19001, 19002, 19004, 19005]
    message = unpublished_message(container, share, missing)
    assert message == (
        "PORT_RANGE_HOST: VPN container gluetun (GLUETUN_CONTAINER_NAME) must publish its "
        "engines' ports 19000-19005, but does not publish 19001-19002, 19004-19005"
    )
    assert "\n" not in message


def test_ports_are_written_short() -> None:
    assert describe_ports([7, 1, 2, 3, 9, 10]) == "1-3, 7, 9-10"


def test_an_engine_behind_a_vpn_answers_at_the_vpn_binding_of_its_port() -> None:
    container = vpn(bindings={19000: Binding("10.1.2.3", 29000), 19001: Binding("0.0.0.0", 1)})
    assert address_behind(container, 19000, "127.0.0.1") == EngineAddress("10.1.2.3", 29000)
    assert address_behind(container, 19001, "192.168.1.5") == EngineAddress("192.168.1.5", 1)
    assert address_behind(container, 19001, "0.0.0.0") == EngineAddress("127.0.0.1", 1)
    assert address_behind(container, 19002, "127.0.0.1") is None


def test_an_engine_is_stranded_when_its_vpn_restarted_or_was_recreated() -> None:
    labels = namespace_labels(vpn())
    assert stranded_reason(labels, vpn()) is None
    assert "restarted" in str(stranded_reason(labels, vpn(started_at="t2")))
    assert "recreated" in str(stranded_reason(labels, vpn(id="def456", started_at="t2")))
    assert "not running" in str(stranded_reason(labels, vpn(running=False)))
    assert "not running" in str(stranded_reason(labels, None))
    assert "without a VPN" in str(stranded_reason({}, vpn()))


def test_gluetun_forwarded_port_answers_old_and_new() -> None:
    assert forwarded_port({"port": 5914}) == 5914
    assert forwarded_port({"port": 5914, "ports": [5914, 6000]}) == 5914
    assert forwarded_port({"port": 0, "ports": None}) is None
    assert forwarded_port({"port": 0}) is None
    assert forwarded_port({"port": "5914"}) is None
    assert forwarded_port(None) is None
