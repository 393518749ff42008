"""The admission point: whatever happens to starts (success, failure, timeout, cancellation, a
container lost or destroyed, a listing that heals the ledger), the slots never pass the maximum,
no port is held twice, every port belongs to exactly one container or reservation, and the
breaker's one half-open trial is never stuck."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acestream_gateway.fleet.admission import (
    Admission,
    NotAdmitted,
    Refusal,
    Reservation,
    Verdict,
    classify,
)
from acestream_gateway.fleet.breaker import BreakerState, CircuitBreaker
from acestream_gateway.fleet.docker import FleetError
from acestream_gateway.fleet.ports import PortAllocator
from acestream_gateway.fleet.specs import ContainerRecord, container_name
from acestream_gateway.settings import Settings

LO, HI, MAX = 19000, 19005, 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_replicas: int = MAX) -> tuple[Admission, Clock]:
    clock = Clock()
    settings = Settings(
        port_range_host=f"{LO}-{HI}", max_active_replicas=max_replicas, docker_timeout_s=5
    )
    breaker = CircuitBreaker(threshold=1, recovery_s=1, max_backoff_s=4, clock=clock)
    ports = PortAllocator(LO, HI, recheck_s=20, clock=clock)

    def failed(reason: str) -> None:
        breaker.record_failure()

    admission = Admission(
        settings=settings, ports=ports, breaker=breaker, on_failure=failed, clock=clock
    )
    return admission, clock


class Fleet(RuleBasedStateMachine):
    """Starts and containers against a model of Docker (the containers that exist)."""

    def __init__(self) -> None:
        super().__init__()
        self.admission, self.clock = make()
        self.live: list[Reservation] = []  # open reservations
        self.doubtful: dict[Reservation, bool] = {}  # in doubt -> whether Docker made it
        self.docker: dict[str, ContainerRecord] = {}  # containers that exist
        self.ids = (f"c{n}" for n in itertools.count())

    @property
    def settings(self) -> Settings:
        return self.admission.settings

    @rule()
    def admit(self) -> None:
        taken = self.admission.taken
        refusal = None
        try:
            self.live.append(self.admission.admit())
        except NotAdmitted as exc:
            refusal = exc.refusal
        assert (refusal is Refusal.FULL) == (taken >= MAX)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), ready=st.booleans())
    def created(self, data: st.DataObject, ready: bool) -> None:
        reservation = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        record = self._exists(reservation)
        if reservation.held(record.id):  # the engine's readiness decides the trial
            if ready:
                self.admission.breaker.record_success()
            else:
                self.admission.breaker.record_failure()

    @precondition(lambda self: self.live)
    @rule(data=st.data(), how=st.sampled_from(["give_back", "aside", "failed", "cancelled"]))
    def ended(self, data: st.DataObject, how: str) -> None:
        reservation = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        if how == "give_back":
            reservation.give_back()
        elif how == "aside":
            reservation.give_back(aside=True)
        elif how == "failed":
            reservation.failed("refused")
        else:
            with pytest.raises(asyncio.CancelledError), reservation:
                raise asyncio.CancelledError  # before its create was sent

    @precondition(lambda self: self.live)
    @rule(data=st.data(), made=st.booleans(), cancelled=st.booleans())
    def no_answer(self, data: st.DataObject, made: bool, cancelled: bool) -> None:
        """The create went out and timed out (or the start was cancelled) with no answer."""
        reservation = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        reservation.sent()
        if cancelled:
            with pytest.raises(asyncio.CancelledError), reservation:
                raise asyncio.CancelledError
        else:
            reservation.in_doubt()
        if made:
            self._exists(reservation)
        self.doubtful[reservation] = made

    @rule(port=st.integers(LO, HI))
    def adopted(self, port: int) -> None:
        """A container of an earlier run, found by a listing."""
        if self.admission.taken >= MAX or port in self.admission.ports:
            return
        record = ContainerRecord(next(self.ids), container_name(self.settings, port), "running", {})
        self.docker[record.id] = record
        assert self.admission.hold(record.id, port)

    @precondition(lambda self: self.admission.held)
    @rule(data=st.data(), reported=st.booleans())
    def removed(self, data: st.DataObject, reported: bool) -> None:
        """A container is removed: by the gateway (gone) or by someone else (destroy event), or
        it vanishes unreported (only a listing will tell)."""
        container_id = data.draw(st.sampled_from(sorted(self.admission.held)))
        self.docker.pop(container_id, None)
        if reported:
            self.admission.destroyed(container_id)

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(destroyed_meanwhile=st.booleans())
    def pass_(self, destroyed_meanwhile: bool) -> None:
        listing = self.admission.listing()
        records = list(self.docker.values())  # what Docker said when asked
        if destroyed_meanwhile and self.admission.held:
            gone = sorted(self.admission.held)[0]
            self.docker.pop(gone, None)
            self.admission.destroyed(gone)
        fresh = self.admission.heal(listing, records)
        assert all(r.id in self.docker for r in fresh), "no gone container comes back"
        for reservation in list(self.doubtful):
            if reservation.state.value == "closed":
                made = self.doubtful.pop(reservation)
                held = {self.admission.held.get(r.id) for r in self.docker.values()}
                assert made == (reservation.port in held)

    @invariant()
    def limits_hold(self) -> None:
        admission = self.admission
        assert admission.taken <= MAX
        held_ports = list(admission.held.values())
        reserved = [r.port for r in admission.reservations]
        assert len(set(held_ports + reserved)) == len(held_ports) + len(reserved), "held twice"
        owners = admission.ports.held
        assert set(owners) == set(held_ports) | set(reserved), "every port accounted for"
        for container_id, port in admission.held.items():
            assert owners[port] == container_id

    @invariant()
    def breaker_never_stuck(self) -> None:
        breaker = self.admission.breaker
        trials = [r for r in self.admission.reservations if r.trial and r.trial == breaker.trials]
        assert len(trials) <= 1
        if breaker.state is BreakerState.HALF_OPEN and breaker.trial_running:
            assert trials, "a half-open breaker whose trial nobody holds"

    def _exists(self, reservation: Reservation) -> ContainerRecord:
        record = ContainerRecord(next(self.ids), reservation.name, "running", {})
        self.docker[record.id] = record
        return record


Fleet.TestCase.settings = hypothesis_settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
test_the_admission_point_keeps_its_ledger_under_any_sequence = Fleet.TestCase


def test_a_reservation_left_without_an_outcome_gives_everything_back() -> None:
    admission, _ = make()
    with admission.admit() as reservation:
        assert admission.taken == 1
    assert admission.taken == 0
    assert admission.ports.held == {}
    assert reservation.state.value == "closed"


def test_a_reservation_ends_exactly_once() -> None:
    admission, _ = make()
    reservation = admission.admit()
    reservation.held("c1")
    reservation.give_back()
    reservation.failed("late")
    assert admission.held == {"c1": LO}
    assert admission.ports.held == {LO: "c1"}
    assert admission.breaker.failures == 0


def test_a_half_open_breaker_admits_one_trial_and_gets_it_back_when_it_said_nothing() -> None:
    admission, clock = make()
    breaker = admission.breaker
    breaker.record_failure()
    breaker.record_failure()
    clock.now += breaker.recovery_s
    trial = admission.admit()
    with pytest.raises(NotAdmitted) as refused:
        admission.admit()
    assert refused.value.refusal is Refusal.BREAKER
    trial.give_back(aside=True)
    assert admission.admit().trial


def test_the_maximum_counts_containers_that_exist_not_only_engines_in_use() -> None:
    admission, _ = make(max_replicas=2)
    admission.hold("exited", LO + 3)  # a stopped container not yet removed still counts
    admission.admit()
    with pytest.raises(NotAdmitted) as refused:
        admission.admit()
    assert refused.value.refusal is Refusal.FULL
    assert "MAX_ACTIVE_REPLICAS" in refused.value.message
    admission.gone("exited")
    admission.admit()


@pytest.mark.parametrize(
    ("status", "message", "verdict"),
    [
        (408, "Docker did not answer in time", Verdict.DOCKER),
        (900, "cannot reach Docker", Verdict.DOCKER),
        (500, "driver failed: port is already allocated", Verdict.PORT),
        (409, 'Conflict. The container name "/x" is already in use', Verdict.PORT),
        (409, "cannot join network of a non running container", Verdict.NEUTRAL),
        (404, "pull access denied", Verdict.ENGINE),
        (400, "invalid mount config", Verdict.ENGINE),
        (500, "OCI runtime create failed", Verdict.ENGINE),
    ],
)
def test_what_a_docker_failure_says_is_decided_in_one_place(
    status: int, message: str, verdict: Verdict
) -> None:
    assert classify(FleetError(status, message)) is verdict


def test_a_trial_whose_create_got_no_answer_is_given_back_when_the_listing_settles_it() -> None:
    admission, clock = make()
    admission.admit().failed("refused")  # opens the breaker
    clock.now += admission.breaker.recovery_s
    for made in (True, False):
        trial = admission.admit()
        assert trial.trial
        trial.sent()
        trial.in_doubt()
        clock.now += admission.settings.docker_timeout_s
        found = [ContainerRecord(f"made{n}", trial.name, "running", {}) for n in range(made)]
        admission.heal(admission.listing(), found)
        assert trial.state.value == "closed"
        assert admission.held == ({"made0": trial.port} if made else {})
        assert admission.breaker.state is BreakerState.HALF_OPEN
        assert not admission.breaker.trial_running, "a slow Docker says nothing of engines"
