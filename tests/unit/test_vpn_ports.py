"""Rule 4 in VPN mode: every engine holds exactly one port of its VPN's share, reserved once and
freed once, through any sequence of creates, removals, gateway restarts (adoption by labels) and
VPN restarts (engines in the old namespace go), and with N ports N engines can run.

The machine drives the fleet's own pieces (the one port allocator, the VPN placement, the
container specs whose labels are the durable record) against a ledger of containers standing in
for Docker's list."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from acestream_gateway.engines.model import Engine, EngineAddress
from acestream_gateway.engines.pool import EnginePool
from acestream_gateway.fleet.ports import PortAllocator
from acestream_gateway.fleet.specs import LABEL_VPN, create_body, port_label
from acestream_gateway.fleet.vpn import Binding, Tunnel, VpnContainer
from acestream_gateway.fleet.vpns import Vpns
from acestream_gateway.settings import Settings

LO, SIZE = 19000, 7
VPNS = ("vpn-a", "vpn-b")
SETTINGS = Settings(
    gluetun_container_name=",".join(VPNS),
    port_range_host=f"{LO}-{LO + SIZE - 1}",
    max_active_replicas=SIZE,
)


def engine(container_id: str, labels: dict[str, str]) -> Engine:
    port = port_label(labels, "acestream-gateway.port") or 0
    return Engine(container_id, container_id, EngineAddress("127.0.0.1", port), labels=labels)


class _Unused:
    """Docker and the control servers: this machine never refreshes the VPNs."""

    async def inspect(self, name: str) -> dict[str, Any] | None:
        raise AssertionError("not asked")

    async def tunnel(self, base_url: str) -> Tunnel:
        raise AssertionError("not asked")


class VpnPortLedger(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ids = itertools.count()
        self.docker: dict[str, dict[str, str]] = {}  # container id -> labels
        self.runs = dict.fromkeys(VPNS, 0)
        self.up = dict.fromkeys(VPNS, True)
        self.boot()

    # --- the gateway's side ---------------------------------------------------------------------

    def boot(self) -> None:
        """A gateway start: fresh memory, then every container adopted by its labels."""
        self.ports = PortAllocator(SETTINGS.port_range_host.lo, SETTINGS.port_range_host.hi)
        self.pool = EnginePool(max_streams_per_engine=1, max_engines=SIZE, provision_wait_s=0)
        self.vpns = Vpns(settings=SETTINGS, docker=_Unused(), gluetun=_Unused(), pool=self.pool)
        self.look()
        for container_id, labels in list(self.docker.items()):
            port = port_label(labels, "acestream-gateway.port")
            assert port is not None
            assert self.ports.claim(port, container_id), "adoption counted a port twice"
            self.pool.add(engine(container_id, labels))
        self.sweep()

    def look(self) -> None:
        """What a pass's refresh would see of the VPN containers."""
        for name in VPNS:
            share = self.vpns.shares[name]
            self.vpns.containers[name] = VpnContainer(
                name=name,
                id=f"{name}-id",
                running=True,
                started_at=f"run-{self.runs[name]}",
                bindings={p: Binding("127.0.0.1", p) for p in share.ports()},
            )
            self.vpns.tunnels[name] = Tunnel("running" if self.up[name] else "stopped")

    def sweep(self) -> None:
        """A pass removes engines stranded in an old namespace; their ports go with them."""
        for container_id, labels in list(self.docker.items()):
            if self.vpns.stranded(labels) is not None:
                self.remove_container(container_id)

    def remove_container(self, container_id: str) -> None:
        labels = self.docker.pop(container_id)
        self.pool.remove(container_id)
        port = port_label(labels, "acestream-gateway.port")
        assert port is not None
        self.ports.release(port)

    # --- rules ----------------------------------------------------------------------------------

    @rule()
    def create(self) -> None:
        placed = self.vpns.place(self.ports, Counter())
        room = any(self.up[n] and self.behind(n) < len(self.vpns.shares[n]) for n in VPNS)
        assert (placed is not None) == room
        if placed is None:
            return
        port, namespace = placed
        container_id = f"c{next(self.ids)}"
        labels = dict(create_body(SETTINGS, port, namespace)["Labels"])
        self.ports.rename(port, container_id)
        self.docker[container_id] = labels
        self.pool.add(engine(container_id, labels))

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        if self.docker:
            self.remove_container(data.draw(st.sampled_from(sorted(self.docker))))

    @rule()
    def restart_gateway(self) -> None:
        self.boot()

    @rule(name=st.sampled_from(VPNS))
    def restart_vpn(self, name: str) -> None:
        self.runs[name] += 1
        self.look()
        self.sweep()

    @rule(name=st.sampled_from(VPNS), up=st.booleans())
    def tunnel(self, name: str, up: bool) -> None:
        self.up[name] = up
        self.look()

    # --- what must always hold ------------------------------------------------------------------

    def behind(self, name: str) -> int:
        return sum(1 for labels in self.docker.values() if labels[LABEL_VPN] == name)

    @invariant()
    def every_container_holds_one_port_and_every_held_port_a_container(self) -> None:
        held = {
            port_label(labels, "acestream-gateway.port"): cid for cid, labels in self.docker.items()
        }
        assert self.ports.held == held
        assert len(held) == len(self.docker) <= SIZE

    @invariant()
    def every_engine_is_in_the_current_run_of_its_vpn_and_on_its_share(self) -> None:
        for labels in self.docker.values():
            assert self.vpns.stranded(labels) is None
            port = port_label(labels, "acestream-gateway.port")
            assert port in self.vpns.shares[labels[LABEL_VPN]]

    @invariant()
    def the_engines_behind_one_vpn_have_distinct_p2p_ports(self) -> None:
        for name in VPNS:
            p2p = [
                labels["acestream-gateway.p2p-port"]
                for labels in self.docker.values()
                if labels[LABEL_VPN] == name
            ]
            assert len(p2p) == len(set(p2p))


VpnPortLedger.TestCase.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestVpnPortLedger = VpnPortLedger.TestCase


def test_with_n_ports_and_every_vpn_up_n_engines_run_after_any_number_of_restarts() -> None:
    ledger = VpnPortLedger()
    for _ in range(3):
        while len(ledger.docker) < SIZE:
            ledger.create()
        ledger.restart_gateway()
        assert len(ledger.docker) == SIZE
        assert len(ledger.ports.held) == SIZE
    assert {ledger.behind(name) for name in VPNS} == {3, 4}
    ledger.create()  # full: refused, nothing counted
    assert len(ledger.ports.held) == SIZE


def test_provisioning_is_blocked_only_when_no_vpn_can_take_an_engine() -> None:
    ledger = VpnPortLedger()
    assert ledger.vpns.blocked_message(ledger.ports) is None
    ledger.tunnel("vpn-b", up=False)
    assert ledger.vpns.blocked_message(ledger.ports) is None, "vpn-a still takes engines"
    while ledger.vpns.place(ledger.ports, Counter()) is not None:
        pass  # fill vpn-a's share (the reservations stand for engines being started)
    message = ledger.vpns.blocked_message(ledger.ports)
    assert message is not None
    assert "vpn-b: its control server reports the tunnel stopped" in message
    ledger.tunnel("vpn-a", up=False)
    assert str(ledger.vpns.blocked_message(ledger.ports)).startswith("no VPN is connected")
