"""The whole fleet (plan, admission, provisioner, reconciler, pool) under a Docker that fails the
way real daemons do, with operators, players, health flips and failovers interleaved.

A hypothesis state machine drives one event loop step by step: each rule starts work as named
tasks (a reconcile pass, an operator's start or removal, a player's claim, a failover) or acts at
once (a Docker fault queued, a container lost or reported dead or destroyed, an engine's health
flipped, a task cancelled in the middle of its Docker call, time passing), and ``run`` lets the
tasks take a few turns of the loop, so every interleaving the loop allows can be reached. Docker
is the in-memory fake of ``tests/fakedocker.py``; an engine's HTTP API answers its readiness probe
when its container runs. Time is a fake clock for the breaker, the ports and the admission, so a
run is the same every time it is replayed.

After every step: no more containers than ``MAX_ACTIVE_REPLICAS`` (Docker counts every container,
in any state); every container's port is held; no task ended with an error the fleet does not
raise by design; the breaker is never half-open with a trial nobody runs. After a quiet pass
(Docker healed, time passed, the passes run): ports held are exactly the containers' and the
reservations', no reservation is left, the breaker is closed, and there are ``MIN_REPLICAS``
empty READY engines wherever there is room.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acestream_gateway.engines.client import EngineClient, EngineError
from acestream_gateway.engines.model import EngineAddress, EngineState
from acestream_gateway.engines.pool import Claim, EnginePool, NoCapacity
from acestream_gateway.fleet.breaker import BreakerState
from acestream_gateway.fleet.docker import FleetError
from acestream_gateway.fleet.reconciler import ActionRefused, Reconciler
from acestream_gateway.fleet.specs import LABEL_PORT
from acestream_gateway.settings import Settings
from tests.fakedocker import FakeDocker

IMAGE = "acestream/engine:test"
LO, MAX, MIN = 19100, 3, 1
PORTS = 5  # more ports than engines: a port set aside must not stop the fleet
CONTENTS = ("aa", "bb", "cc", "dd")
METHODS = ("list", "run", "inspect", "remove", "ensure_image")
EXPECTED = (FleetError, ActionRefused, NoCapacity, asyncio.CancelledError)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class EngineApis:
    """The engines' HTTP APIs as the readiness probe sees them: an engine answers while its
    container runs."""

    def __init__(self, docker: FakeDocker) -> None:
        self._docker = docker
        self.http = None
        self.booting: asyncio.Event | None = None  # set: engines answer; None: at once

    async def version(self, address: EngineAddress) -> str:
        await asyncio.sleep(0)
        if self.booting is not None:
            await self.booting.wait()
        port = str(address.port)
        for container in self._docker.containers.values():
            if container.labels.get(LABEL_PORT) == port and container.state == "running":
                return "3.2.3"
        raise EngineError("unreachable", f"nothing answers on port {address.port}")


def fleet_settings() -> Settings:
    return Settings(
        port_range_host=f"{LO}-{LO + PORTS - 1}",
        min_replicas=MIN,
        max_active_replicas=MAX,
        max_streams_per_engine=1,
        provision_concurrency=2,
        engine_image=IMAGE,
        engine_grace_period_s=0,
        unhealthy_engine_timeout_s=1e6,
        provision_wait_s=1e6,
        circuit_breaker_failure_threshold=2,
        circuit_breaker_recovery_timeout_s=10,
        circuit_breaker_max_backoff_s=40,
        docker_timeout_s=5,
        gateway_instance_name="stateful",
    )


class FleetMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.settings = fleet_settings()
        self.docker = FakeDocker(images=(IMAGE,))
        self.pool = EnginePool(
            max_streams_per_engine=1, max_engines=MAX, provision_wait_s=1e6, failure_threshold=3
        )
        self.apis = EngineApis(self.docker)
        self.reconciler = Reconciler(
            settings=self.settings,
            docker=self.docker,
            pool=self.pool,
            client=cast(EngineClient, self.apis),
        )
        self._set_clocks()
        self.tasks: list[asyncio.Task[Any]] = []  # fleet work: passes, operators' actions
        self.players: list[asyncio.Task[Any]] = []  # claims and failovers
        self.claims: list[Claim] = []
        self.gates: list[asyncio.Event] = []
        self.crashes: list[str] = []
        self.engine_faults = 0  # faults injected that say something about engines
        self.events = self.loop.create_task(self._follow_events(), name="docker events")
        self.loop.run_until_complete(asyncio.sleep(0))  # subscribed before the first step

        self.last_pass_began = -1.0  # fake-clock time the latest pass that ended began

    def _set_clocks(self) -> None:
        self.reconciler.breaker._clock = self.clock
        self.reconciler.ports._clock = self.clock
        self.reconciler.admission.clock = self.clock

    # --- the loop ------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        """Docker's events reach the reconciler as its event follower hands them on."""
        async with self.docker.watch({}) as events:
            async for event in events:
                self.reconciler.events.apply(event)

    def _turns(self, count: int) -> None:
        async def turns() -> None:
            for _ in range(count):
                await asyncio.sleep(0)

        self.loop.run_until_complete(turns())
        self._collect()

    def _spawn(self, coro: Any, name: str, *, player: bool = False) -> None:
        task = self.loop.create_task(coro, name=name)
        (self.players if player else self.tasks).append(task)

    def _collect(self) -> None:
        """Look at the tasks that ended: an error the fleet does not raise by design is a crash."""
        for group in (self.tasks, self.players):
            for task in [t for t in group if t.done()]:
                group.remove(task)
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is not None and not isinstance(exc, EXPECTED):
                    self.crashes.append(f"{task.get_name()}: {exc!r}")

    def _engine_ids(self) -> list[str]:
        return sorted(e.id for e in self.pool.engines())

    def _container_ids(self) -> list[str]:
        return sorted(self.docker.containers)

    # --- fleet work ----------------------------------------------------------------------------

    @rule()
    def reconcile_pass(self) -> None:
        self._spawn(self._pass(), "reconcile pass")

    async def _pass(self) -> None:
        began = self.clock.now
        await self.reconciler.reconcile()
        self.last_pass_began = max(self.last_pass_began, began)

    @rule()
    def operator_starts_an_engine(self) -> None:
        self._spawn(self.reconciler.actions.start_engine(), "operator start")

    @precondition(lambda self: self.pool.engines())
    @rule(pick=st.integers(0, MAX))
    def operator_removes_an_engine(self, pick: int) -> None:
        ids = self._engine_ids()
        self._spawn(self.reconciler.actions.remove_engine(ids[pick % len(ids)]), "operator removal")

    @precondition(lambda self: self.pool.engines())
    @rule(pick=st.integers(0, MAX))
    def operator_drains_an_engine(self, pick: int) -> None:
        ids = self._engine_ids()
        with contextlib.suppress(ActionRefused):
            self.reconciler.actions.drain(ids[pick % len(ids)])

    @rule(turns=st.integers(1, 12))
    def run(self, turns: int) -> None:
        self._turns(turns)

    @precondition(lambda self: self.tasks or self.players)
    @rule(pick=st.integers(0, 8))
    def cancel_a_task(self, pick: int) -> None:
        """Cancelled in the middle of whatever it awaits (a Docker call, most often)."""
        tasks = self.tasks + self.players
        tasks[pick % len(tasks)].cancel()
        self._turns(1)

    @rule(seconds=st.sampled_from([1.0, 6.0, 15.0, 45.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    # --- players --------------------------------------------------------------------------------

    @rule(content=st.sampled_from(CONTENTS))
    def player_claims(self, content: str) -> None:
        async def claim() -> None:
            self.claims.append(await self.pool.claim(content))

        self._spawn(claim(), f"claim {content}", player=True)

    @precondition(lambda self: self.claims)
    @rule(pick=st.integers(0, 8), activate=st.booleans())
    def player_plays_or_leaves(self, pick: int, activate: bool) -> None:
        claim = self.claims[pick % len(self.claims)]
        if activate:
            claim.activate()
        else:
            claim.release()
            self.claims.remove(claim)

    @precondition(lambda self: self.claims)
    @rule(pick=st.integers(0, 8))
    def channel_fails_over(self, pick: int) -> None:
        """The channel moves: the new slot is claimed before the old one is released (rule 2)."""
        old = self.claims.pop(pick % len(self.claims))

        async def failover() -> None:
            try:
                new = await self.pool.claim(
                    old.content_key, exclude={old.engine.id}, wait_for_provisioning=True
                )
            finally:
                old.release()
            self.claims.append(new)

        self._spawn(failover(), f"failover {old.content_key}", player=True)

    @precondition(lambda self: self.pool.engines())
    @rule(pick=st.integers(0, MAX), fails=st.integers(1, 3))
    def engine_health_fails(self, pick: int, fails: int) -> None:
        ids = self._engine_ids()
        for _ in range(fails):
            self.pool.note_failure(ids[pick % len(ids)], "status probe timed out")

    @precondition(lambda self: self.apis.booting is None)
    @rule()
    def engines_boot_slowly(self) -> None:
        """New engines stay STARTING (their API does not answer yet) until they boot."""
        self.apis.booting = asyncio.Event()

    @precondition(lambda self: self.apis.booting is not None)
    @rule()
    def engines_boot(self) -> None:
        self._engines_boot()

    def _engines_boot(self) -> None:
        if self.apis.booting is not None:
            self.apis.booting.set()
            self.apis.booting = None

    # --- Docker ---------------------------------------------------------------------------------

    @rule(
        method=st.sampled_from(METHODS),
        fault=st.sampled_from(["409", "500", "timeout_before", "timeout_after", "hold", "late"]),
    )
    def docker_fails_a_call(self, method: str, fault: str) -> None:
        if fault in ("409", "500") and method in ("run", "ensure_image"):
            self.engine_faults += 1  # Docker refuses the engine or its image
        if fault in ("409", "500"):
            message = "Conflict" if fault == "409" else "internal server error"
            self.docker.fail(method, int(fault), message)
        elif fault.startswith("timeout"):
            self.docker.time_out(method, after=fault == "timeout_after")
        else:
            self.gates.append(self.docker.hold(method, late=fault == "late"))

    @precondition(lambda self: self.gates)
    @rule()
    def docker_answers(self) -> None:
        self._answer_held_calls()

    @precondition(lambda self: self.docker.containers)
    @rule(pick=st.integers(0, MAX), how=st.sampled_from(["lost", "died", "destroyed"]))
    def container_goes(self, pick: int, how: str) -> None:
        ids = self._container_ids()
        container_id = ids[pick % len(ids)]
        self.engine_faults += 1  # an engine that was starting may have died
        if how == "lost":  # gone without an event (missed while the stream was down)
            self.docker.lose(container_id)
        elif how == "died":
            self.docker.kill(container_id)
        else:  # someone else removed it: die, then destroy
            self.docker.kill(container_id)
            self.docker.destroy(container_id)

    # --- a quiet pass ---------------------------------------------------------------------------

    @rule()
    def quiet_pass(self) -> None:
        """Docker heals, the fleet's work ends, time passes, passes run: the fleet is whole."""
        self._heal_docker()
        for _ in range(50):
            if not self.tasks:
                break
            self._heal_docker()
            self._turns(5)
        assert not self.tasks, f"fleet work still running on a healed Docker: {self.tasks}"
        for _ in range(6):
            eta = self.reconciler.breaker.eta_s() or 0
            self.clock.now += max(eta, self.settings.docker_timeout_s) + 1
            self._pass_now()
            self._turns(10)
            if self._floor_reached():
                break
        self._check_ledger_is_whole()

    def _pass_now(self) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(5):  # real seconds: a pass on a healed Docker is instant
                await self._pass()

        self.loop.run_until_complete(bounded())

    def _heal_docker(self) -> None:
        self._engines_boot()
        self.docker._faults.clear()
        self._answer_held_calls()

    def _answer_held_calls(self) -> None:
        for gate in self.gates:
            gate.set()
        self.gates.clear()

    def _floor_reached(self) -> bool:
        return self._ready_empty() >= MIN or len(self.docker.containers) >= MAX

    def _ready_empty(self) -> int:
        return sum(
            1 for x in self.pool.snapshot() if x.engine.state is EngineState.READY and not x.streams
        )

    def _check_ledger_is_whole(self) -> None:
        held = self.reconciler.ports.held
        ports = {int(c.labels[LABEL_PORT]): c.id for c in self.docker.containers.values()}
        assert held == ports, f"ports held {held} != the containers' {ports}"
        assert not self.reconciler.admission.reservations, "a quiet fleet has no reservation"
        breaker = self.reconciler.breaker
        if breaker.state is not BreakerState.CLOSED:
            # Opened by engines that died while starting (faults of engines, bounded by their
            # own invariant): the next engine the fleet needs is its trial, which closes it. A
            # quiet fleet that needs none leaves it so, but never holding a trial nobody runs.
            assert breaker.openings > 0, "only an opening leaves the breaker other than closed"
            assert not breaker.trial_running, "a quiet fleet's breaker holds no trial"
        assert self._floor_reached(), (
            f"{self._ready_empty()} empty READY engines < MIN_REPLICAS with "
            f"{len(self.docker.containers)} of {MAX} containers"
        )

    # --- after every step -----------------------------------------------------------------------

    @invariant()
    def no_crash(self) -> None:
        assert not self.crashes, self.crashes

    @invariant()
    def only_engine_failures_count_against_the_breaker(self) -> None:
        registry = self.reconciler.metrics.registry
        failures = registry.get_sample_value("acestream_gateway_provisioning_failures_total") or 0
        assert failures <= self.engine_faults, (
            f"{failures:g} provisioning failures counted, {self.engine_faults} engine faults made"
        )

    @invariant()
    def containers_stay_within_max(self) -> None:
        assert len(self.docker.containers) <= MAX, sorted(
            (c.name, c.state) for c in self.docker.containers.values()
        )

    @invariant()
    def every_container_holds_its_port(self) -> None:
        held = self.reconciler.ports.held
        reserved = {r.port for r in self.reconciler.admission.reservations}
        for container in self.docker.containers.values():
            port = int(container.labels[LABEL_PORT])
            assert held.get(port) == container.id or port in reserved, (
                f"{container.name} exists but port {port} is held by {held.get(port)!r}"
            )

    @invariant()
    def ports_held_are_the_ledgers_containers_and_reservations(self) -> None:
        admission = self.reconciler.admission
        reserved = [r.port for r in admission.reservations]
        ledger = sorted([*admission.held.values(), *reserved])
        assert ledger == sorted(self.reconciler.ports.held), "no port held twice or for nobody"
        assert admission.taken <= MAX

    @invariant()
    def no_reservation_outlives_its_deadline_and_a_pass(self) -> None:
        for reservation in self.reconciler.admission.reservations:
            if reservation.state.value == "in_doubt":
                assert reservation.deadline is not None
                assert reservation.deadline > self.last_pass_began, (
                    f"reservation of port {reservation.port} in doubt past its deadline "
                    f"{reservation.deadline} though a pass began at {self.last_pass_began}"
                )

    @invariant()
    def breaker_never_stuck(self) -> None:
        breaker = self.reconciler.breaker
        if breaker.state is not BreakerState.HALF_OPEN or not breaker.trial_running:
            return
        held_by = [r for r in self.reconciler.admission.reservations if r.trial == breaker.trials]
        attempts = self.reconciler.provisioner.attempts.trials()
        assert held_by or breaker.trials in attempts or self.tasks, (
            "half-open with a trial that no reservation, starting engine or task holds"
        )

    def teardown(self) -> None:
        async def end() -> None:
            pending = [*self.tasks, *self.players, self.events]
            for task in pending:
                task.cancel()
            self._heal_docker()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.reconciler.close()

        try:
            self.loop.run_until_complete(end())
        finally:
            self.loop.close()


FleetMachine.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_fleet_keeps_its_rules_under_docker_faults = FleetMachine.TestCase


# Sequences the machine found, replayed as they shrank, so they are checked on every run.


def replay(*steps: tuple[str, dict[str, Any]]) -> None:
    machine = FleetMachine()
    try:
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            for check in (
                machine.no_crash,
                machine.only_engine_failures_count_against_the_breaker,
                machine.containers_stay_within_max,
                machine.every_container_holds_its_port,
                machine.ports_held_are_the_ledgers_containers_and_reservations,
                machine.no_reservation_outlives_its_deadline_and_a_pass,
                machine.breaker_never_stuck,
            ):
                check()
    finally:
        machine.teardown()


def test_operator_starts_beyond_the_maximum_are_refused() -> None:
    replay(
        ("player_claims", {"content": "aa"}),
        ("quiet_pass", {}),
        *[("operator_starts_an_engine", {})] * 3,
        ("cancel_a_task", {"pick": 0}),
        ("run", {"turns": 1}),
        ("quiet_pass", {}),
    )


def test_a_start_cancelled_before_it_ran_gives_its_reservation_back() -> None:
    replay(
        ("operator_starts_an_engine", {}),
        ("operator_starts_an_engine", {}),
        ("reconcile_pass", {}),
        ("operator_starts_an_engine", {}),
        *[("cancel_a_task", {"pick": 0})] * 3,
        ("quiet_pass", {}),
    )


def test_a_create_cancelled_after_docker_made_the_container_keeps_its_port() -> None:
    replay(
        ("docker_fails_a_call", {"method": "run", "fault": "late"}),
        ("operator_starts_an_engine", {}),
        ("operator_starts_an_engine", {}),
        ("cancel_a_task", {"pick": 0}),
        ("cancel_a_task", {"pick": 0}),
        ("quiet_pass", {}),
    )


def test_an_operator_removing_a_starting_engine_counts_no_provisioning_failure() -> None:
    replay(
        ("engines_boot_slowly", {}),
        ("operator_starts_an_engine", {}),
        ("run", {"turns": 2}),
        ("operator_starts_an_engine", {}),
        ("reconcile_pass", {}),
        ("operator_removes_an_engine", {"pick": 0}),
        ("operator_starts_an_engine", {}),
        ("cancel_a_task", {"pick": 0}),
    )
