"""What the fleet's state machine (``tests/fleet_machine.py``) checks after every step: the
invariants of the module docstring there, over every endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hypothesis.stateful import invariant

from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import Claim, ClaimState, EnginePool
from acestream_gateway.fleet.breaker import BreakerState
from acestream_gateway.fleet.reconciler import Reconciler
from acestream_gateway.fleet.specs import LABEL_PORT

if TYPE_CHECKING:
    from tests.fleet_machine import Side


class FleetInvariants:
    """The invariants, as a part of the machine (which has the attributes below)."""

    sides: list[Side]
    pool: EnginePool
    reconciler: Reconciler
    claims: list[Claim]
    crashes: list[str]
    tasks: list[asyncio.Task[Any]]
    engine_faults: int
    failures_before: float
    max: int

    def check_all(self) -> None:
        """Every invariant, as hypothesis checks them after each step."""
        for check in self._checks():
            check()

    def _checks(self) -> list[Callable[[], None]]:
        return [
            self.no_crash,
            self.only_engine_failures_count_against_the_breaker,
            self.containers_stay_within_max_and_shares,
            self.every_container_holds_its_port,
            self.ports_held_are_the_ledgers_containers_and_reservations,
            self.no_reservation_outlives_its_deadline_and_a_listing,
            self.breaker_never_stuck,
            self.engines_stay_on_their_endpoint,
            self.claims_sit_on_ready_engines,
        ]

    def _failures_counted(self) -> float:
        """Provisioning failures the running gateway counted."""
        registry = self.reconciler.metrics.registry
        return registry.get_sample_value("acestream_gateway_provisioning_failures_total") or 0

    @invariant()
    def no_crash(self) -> None:
        assert not self.crashes, self.crashes

    @invariant()
    def only_engine_failures_count_against_the_breaker(self) -> None:
        failures = self.failures_before + self._failures_counted()
        assert failures <= self.engine_faults, (
            f"{failures:g} provisioning failures counted, {self.engine_faults} engine faults made"
        )

    @invariant()
    def containers_stay_within_max_and_shares(self) -> None:
        every = [(s.name, c.name, c.state) for s in self.sides for c in s.containers()]
        assert len(every) <= self.max, every
        for side in self.sides:
            mine = side.containers()
            assert len(mine) <= side.share, f"{side.name} past its max_engines: {every}"

    @invariant()
    def every_container_holds_its_port(self) -> None:
        for side in self.sides:
            if side.last_heal < 0:
                continue  # a gateway that just started has not listed this endpoint yet
            held = side.backend.ports.held
            reserved = {r.port for r in side.backend.admission.reservations}
            for container in side.containers():
                port = int(container.labels[LABEL_PORT])
                assert held.get(port) == container.id or port in reserved, (
                    f"{container.name} exists but port {port} of {side.name} is held by "
                    f"{held.get(port)!r}"
                )

    @invariant()
    def ports_held_are_the_ledgers_containers_and_reservations(self) -> None:
        for side in self.sides:
            admission = side.backend.admission
            reserved = [r.port for r in admission.reservations]
            ledger = sorted([*admission.held.values(), *reserved])
            held = sorted(side.backend.ports.held)
            assert ledger == held, f"{side.name}: no port held twice or for nobody"
            outside = [p for p in held if not side.lo <= p <= side.hi]
            assert not outside, f"{side.name} holds ports outside {side.lo}-{side.hi}: {outside}"
            assert admission.taken <= side.share
        assert sum(s.backend.admission.taken for s in self.sides) <= self.max

    @invariant()
    def no_reservation_outlives_its_deadline_and_a_listing(self) -> None:
        for side in self.sides:
            for reservation in side.backend.admission.reservations:
                if reservation.state.value == "in_doubt":
                    assert reservation.deadline is not None
                    assert reservation.deadline > side.last_heal, (
                        f"reservation of port {reservation.port} of {side.name} in doubt past "
                        f"its deadline {reservation.deadline}, though a listing of "
                        f"{side.last_heal} healed the ledger"
                    )

    @invariant()
    def breaker_never_stuck(self) -> None:
        for side in self.sides:
            breaker = side.backend.breaker
            if breaker.state is not BreakerState.HALF_OPEN or not breaker.trial_running:
                continue
            admission = side.backend.admission
            held_by = [r for r in admission.reservations if r.trial == breaker.trials]
            attempts = side.backend.provisioner.attempts.trials()
            assert held_by or breaker.trials in attempts or self.tasks, (
                f"{side.name} half-open with a trial that no reservation, starting engine or "
                "task holds"
            )

    @invariant()
    def engines_stay_on_their_endpoint(self) -> None:
        """An engine is its own endpoint's container, held by that endpoint's ledger only."""
        by_name = {s.name: s for s in self.sides}
        for engine in self.pool.engines():
            side = by_name[engine.endpoint]
            assert engine.address.host == side.host, f"{engine.name} at {engine.address}"
            for other in self.sides:
                if other is not side:
                    assert engine.id not in {c.id for c in other.containers()}, (
                        f"{engine.name} of {other.name} adopted by {side.name}"
                    )
        for side in self.sides:
            theirs = {c.id for o in self.sides if o is not side for c in o.containers()}
            stolen = theirs & set(side.backend.admission.held)
            assert not stolen, f"{side.name} holds other endpoints' containers {stolen}"

    @invariant()
    def claims_sit_on_ready_engines(self) -> None:
        """A claim not told to move is on an engine of the pool that is READY (or draining: an
        operator's drain lets its channels play on)."""
        for claim in self.claims:
            if claim.state is ClaimState.RELEASED or claim.lost.is_set():
                continue
            engine = claim.engine
            assert self.pool.get(engine.id) is engine, f"a claim on {engine.name}, gone"
            assert engine.state in (EngineState.READY, EngineState.DRAINING), (
                f"a claim sits on {engine.name}, {engine.state.value}"
            )
