"""The whole fleet (plan, admission, provisioner, reconciler, pool) as a hypothesis state machine,
over one fake Docker per endpoint (``tests/fakedocker.py``) that fails the way real daemons do,
with operators, players, health flips, failovers and daemons going away interleaved.

A machine drives one event loop step by step: each rule starts work as named tasks (a reconcile
pass, an operator's start or removal, a player's claim, a failover) or acts at once (a Docker fault
queued on one endpoint, a container lost or reported dead or destroyed, an endpoint's daemon gone
or back, an engine's health flipped, a task cancelled in the middle of its Docker call, time
passing), and ``run`` lets the tasks take a few turns of the loop, so every interleaving the loop
allows can be reached. Each endpoint's Docker events reach its backend through the backend's own
event follower, which breaks when the daemon goes and reconnects (relisting first) when it is
back. An engine's HTTP API answers its readiness probe while its container runs (and its host is
up). Time is a fake clock for the breakers, the ports and the admission points, so a run is the
same every time it is replayed.

After every step: no more containers than ``MAX_ACTIVE_REPLICAS`` over all endpoints, and none past
an endpoint's ``max_engines``; every container's port is held by its own endpoint, within its
range, and no port is held twice or for nobody; every engine of the pool lives on the endpoint
whose container it is (no endpoint adopts another's); the fleet sends no start to an endpoint it
found unreachable (while it is); a player's claim sits on a READY engine (or a draining one it was
on) until it is told to move; no task ended with an error the fleet does not raise by design; a
breaker is never half-open with a trial nobody runs. After a quiet pass (every daemon back and
healed, time passed, the passes run): each ledger is exactly its Docker's containers, no
reservation, in-doubt create or fleet task is left, and there are ``MIN_REPLICAS`` empty READY
engines wherever there is room.

A test module subclasses :class:`FleetMachine` with its settings and daemons
(:meth:`FleetMachine.configure`); :func:`replay` runs a sequence it found as a plain test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from acestream_gateway.engines.client import EngineClient, EngineError
from acestream_gateway.engines.model import EngineAddress, EngineState
from acestream_gateway.engines.pool import Claim, EnginePool, NoCapacity
from acestream_gateway.fleet.admission import Listing
from acestream_gateway.fleet.breaker import BreakerState
from acestream_gateway.fleet.docker import DockerEngines, FleetError
from acestream_gateway.fleet.docker_backend import DockerBackend
from acestream_gateway.fleet.reconciler import ActionRefused, Reconciler
from acestream_gateway.fleet.specs import LABEL_ENDPOINT, LABEL_PORT, ContainerRecord
from acestream_gateway.settings import Settings
from tests.fakedocker import FakeContainer, FakeDocker
from tests.fleet_invariants import FleetInvariants
from tests.fleet_rules import DockerRules, PlayerRules

EXPECTED = (FleetError, ActionRefused, NoCapacity, asyncio.CancelledError)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class Side:
    """One endpoint as the machine sees it: its daemon, its backend and what it was told."""

    backend: DockerBackend
    docker: FakeDocker
    lo: int
    hi: int
    share: int
    host: str  # the address its engines are reached at
    label: str | None  # its engines' endpoint label (None on the one default endpoint)
    host_down: bool = False  # gone with its daemon: its engines do not answer either
    last_heal: float = -1.0  # fake-clock time of the latest listing its ledger healed with

    @property
    def name(self) -> str:
        return self.backend.name

    def containers(self) -> list[FakeContainer]:
        """Its engine containers (another endpoint may share the daemon)."""
        return [
            c for c in self.docker.containers.values() if c.labels.get(LABEL_ENDPOINT) == self.label
        ]


class EngineApis:
    """The engines' HTTP APIs as the readiness probe sees them: an engine answers while its
    container runs and its host is up."""

    def __init__(self) -> None:
        self.sides: list[Side] = []
        self.http = None
        self.booting: asyncio.Event | None = None  # set: engines answer; None: at once

    async def version(self, address: EngineAddress) -> str:
        await asyncio.sleep(0)
        if self.booting is not None:
            await self.booting.wait()
        for side in self.sides:
            if side.host != address.host or (side.host_down and side.docker.down):
                continue
            for container in side.containers():
                if container.labels.get(LABEL_PORT) == str(address.port) and (
                    container.state == "running"
                ):
                    return "3.2.3"
        raise EngineError("unreachable", f"nothing answers on {address.host}:{address.port}")


class _Starts:
    """An endpoint's Docker as its provisioner sees it: the machine hears of each start it
    begins (its image asked for), on that endpoint (two may share a daemon)."""

    def __init__(self, docker: FakeDocker, side: Side, machine: FleetMachine) -> None:
        self._docker = docker
        self._side = side
        self._machine = machine

    async def ensure_image(self, image: str) -> None:
        self._machine.start_begins(self._side)
        await self._docker.ensure_image(image)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._docker, name)


class FleetMachine(PlayerRules, DockerRules, FleetInvariants, RuleBasedStateMachine):
    """See the module docstring. Subclasses say what fleet it is in :meth:`configure`."""

    def configure(self) -> tuple[Settings, dict[str, FakeDocker]]:
        """The fleet's settings, and the fake daemon of each endpoint by backend name (one
        daemon may serve several endpoints)."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.settings, dockers = self.configure()
        self.max = self.settings.max_active_replicas
        self.min = self.settings.min_replicas
        self.dockers = dockers
        self.apis = EngineApis()
        self.tasks: list[asyncio.Task[Any]] = []  # fleet work: passes, operators' actions
        self.players: list[asyncio.Task[Any]] = []  # claims and failovers
        self.claims: list[Claim] = []
        self.gates: list[asyncio.Event] = []
        self.crashes: list[str] = []
        self.engine_faults = 0  # faults injected that say something about engines
        self.failures_before = 0.0  # provisioning failures counted by earlier gateway runs
        self.sides: list[Side] = []
        self._start_gateway()

    def _start_gateway(self) -> None:
        """A gateway starts on the daemons: a new pool and fleet, each endpoint's events
        followed (its first listing adopts what it finds)."""
        self.pool = EnginePool(
            max_streams_per_engine=1,
            max_engines=self.max,
            provision_wait_s=1e6,
            failure_threshold=3,
        )
        client = cast(EngineClient, self.apis)
        if self.settings.docker_endpoints:
            self.reconciler = Reconciler(
                settings=self.settings, dockers=self.dockers, pool=self.pool, client=client
            )
        else:
            [docker] = self.dockers.values()
            self.reconciler = Reconciler(
                settings=self.settings, docker=docker, pool=self.pool, client=client
            )
        hosts_down = {s.name for s in self.sides if s.host_down}
        self.sides = [
            self._side(b, self.dockers[name]) for name, b in self.reconciler.backends.items()
        ]
        for side in self.sides:
            side.host_down = side.name in hosts_down
        self.apis.sides = self.sides
        self.daemons = list({id(s.docker): s.docker for s in self.sides}.values())
        self.followers = [
            self.loop.create_task(self._follow(side), name=f"docker events of {side.name}")
            for side in self.sides
        ]
        self.loop.run_until_complete(asyncio.sleep(0))  # subscribed before the next step

    async def _stop_gateway(self) -> None:
        """The gateway's process ends: its work, its players and its followers with it."""
        pending = [*self.tasks, *self.players, *self.followers]
        for gate in self.gates:  # Docker answers the calls the dead process had sent
            gate.set()
        self.gates.clear()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.tasks, self.players, self.followers, self.claims = [], [], [], []
        await self.reconciler.close()

    def _side(self, backend: DockerBackend, docker: FakeDocker) -> Side:
        endpoint = backend.endpoint
        side = Side(
            backend=backend,
            docker=docker,
            lo=endpoint.ports[0],
            hi=endpoint.ports[1],
            share=endpoint.max_engines,
            host=endpoint.engine_host,
            label=endpoint.name if endpoint.named else None,
        )
        backend.breaker._clock = self.clock
        backend.ports._clock = self.clock
        backend.admission.clock = self.clock
        heal = backend.admission.heal

        def spied(listing: Listing, records: Iterable[ContainerRecord]) -> list[ContainerRecord]:
            side.last_heal = max(side.last_heal, listing.at)
            return heal(listing, records)

        backend.admission.heal = spied  # type: ignore[method-assign]
        backend.provisioner._docker = cast(DockerEngines, _Starts(docker, side, self))
        return side

    # --- the loop ------------------------------------------------------------------------------

    async def _follow(self, side: Side) -> None:
        """The endpoint's event follower, reconnecting as soon as its daemon is back."""
        side.backend.events._sleep = side.docker.wait_up
        await side.backend.events.run()

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
        """Look at the tasks that ended: an error the fleet does not raise by design is a crash
        (and an event follower never ends)."""
        for group in (self.tasks, self.players):
            for task in [t for t in group if t.done()]:
                group.remove(task)
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is not None and not isinstance(exc, EXPECTED):
                    self.crashes.append(f"{task.get_name()}: {exc!r}")
        for task in self.followers:
            if task.done():
                self.crashes.append(f"{task.get_name()} ended: {task.exception()!r}")

    def start_begins(self, side: Side) -> None:
        """A start begins on ``side``'s endpoint: never on a daemon that is down when the fleet
        had found it so. (A start begins with its image, and its creates follow as Docker
        answers: one begun while the endpoint answered may send its create just after the
        endpoint was found gone, and keeps that create in doubt like any other unanswered one.
        With one endpoint it is always the place: a start is how an operator learns it is
        back.)"""
        if side.docker.down and not side.backend.docker_up and len(self.sides) > 1:
            self.crashes.append(f"a start on endpoint {side.name}, which the fleet holds down")

    def _engine_ids(self) -> list[str]:
        return sorted(e.id for e in self.pool.engines())

    def _containers(self) -> list[tuple[Side, str]]:
        return sorted(((s, c.id) for s in self.sides for c in s.containers()), key=lambda x: x[1])

    def _on(self, where: int) -> Side:
        return self.sides[where % len(self.sides)]

    # --- fleet work ----------------------------------------------------------------------------

    @rule()
    def reconcile_pass(self) -> None:
        self._spawn(self.reconciler.reconcile(), "reconcile pass")

    @rule()
    def operator_starts_an_engine(self) -> None:
        self._spawn(self.reconciler.actions.start_engine(), "operator start")

    @precondition(lambda self: self.pool.engines())
    @rule(pick=st.integers(0, 8))
    def operator_removes_an_engine(self, pick: int) -> None:
        ids = self._engine_ids()
        self._spawn(self.reconciler.actions.remove_engine(ids[pick % len(ids)]), "operator removal")

    @precondition(lambda self: self.pool.engines())
    @rule(pick=st.integers(0, 8))
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

    @rule()
    def gateway_restarts(self) -> None:
        """The gateway stops (its players go with it) and starts again on the same daemons."""
        self.failures_before += self._failures_counted()
        self.loop.run_until_complete(self._stop_gateway())
        self._start_gateway()

    # --- a quiet pass ---------------------------------------------------------------------------

    @rule()
    def quiet_pass(self) -> None:
        """Docker heals, the fleet's work ends, time passes, passes run: the fleet is whole."""
        self._heal_docker()
        for _ in range(50):
            if not self.tasks:
                break
            self._heal_docker()
            if not self.reconciler.adopted.is_set():  # the loop's first pass, which starts wait
                self._pass_now()
            self._turns(5)
        assert not self.tasks, f"fleet work still running on a healed Docker: {self.tasks}"
        for _ in range(6):
            eta = max((s.backend.breaker.eta_s() or 0) for s in self.sides)
            self.clock.now += max(eta, self.settings.docker_timeout_s) + 1
            self._pass_now()
            self._turns(10)
            if self._floor_reached():
                break
        self._check_ledger_is_whole()

    def _pass_now(self) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(5):  # real seconds: a pass on a healed Docker is instant
                await self.reconciler.reconcile()

        self.loop.run_until_complete(bounded())

    def _heal_docker(self) -> None:
        self._engines_boot()
        for side in self.sides:
            side.host_down = False
        for docker in self.daemons:
            docker.down = False
            docker._faults.clear()
        self._answer_held_calls()

    def _answer_held_calls(self) -> None:
        for gate in self.gates:
            gate.set()
        self.gates.clear()

    def _probes_settled(self) -> list[str]:
        """Engines still STARTING once their probes had time for one more try (a probe waits
        half a second, real time, between tries)."""

        async def settle() -> None:
            for _ in range(20):
                if not any(e.state is EngineState.STARTING for e in self.pool.engines()):
                    return
                await asyncio.sleep(0.05)

        self.loop.run_until_complete(settle())
        return [e.name for e in self.pool.engines() if e.state is EngineState.STARTING]

    def _floor_reached(self) -> bool:
        return self._ready_empty() >= self.min or not any(
            s.backend.admission.room() for s in self.sides
        )

    def _ready_empty(self) -> int:
        return sum(
            1 for x in self.pool.snapshot() if x.engine.state is EngineState.READY and not x.streams
        )

    def _check_ledger_is_whole(self) -> None:
        for side in self.sides:
            backend = side.backend
            held = backend.ports.held
            ports = {int(c.labels[LABEL_PORT]): c.id for c in side.containers()}
            assert held == ports, f"{side.name}: ports held {held} != the containers' {ports}"
            assert not backend.admission.reservations, "a quiet fleet has no reservation"
            assert backend.docker_up, f"{side.name} answers but is held down"
            breaker = backend.breaker
            if breaker.state is not BreakerState.CLOSED:
                # Opened by engines that died while starting (faults of engines, bounded by
                # their own invariant): the next engine the fleet needs is its trial, which
                # closes it. A quiet fleet that needs none leaves it so, but never holding a
                # trial nobody runs.
                assert breaker.openings > 0, "only an opening leaves the breaker other than closed"
                assert not breaker.trial_running, "a quiet fleet's breaker holds no trial"
        starting = self._probes_settled()
        assert not starting, f"engines still starting on a healed, booted fleet: {starting}"
        left = self.reconciler._tasks.names
        assert not left, f"fleet tasks left on a quiet fleet: {left}"
        assert self._floor_reached(), (
            f"{self._ready_empty()} empty READY engines < MIN_REPLICAS with "
            f"{[len(s.containers()) for s in self.sides]} containers"
        )

    def teardown(self) -> None:
        async def end() -> None:
            self._heal_docker()
            await self._stop_gateway()

        try:
            self.loop.run_until_complete(end())
        finally:
            self.loop.close()


def machine_settings(image: str, *, min_replicas: int, max_replicas: int, **where: Any) -> Settings:
    """The settings every fleet machine runs with (fast breaker, no grace, nothing waits out a
    machine's run), and ``where`` its engines go (``port_range_host`` or ``docker_endpoints``)."""
    return Settings(
        **where,
        min_replicas=min_replicas,
        max_active_replicas=max_replicas,
        max_streams_per_engine=1,
        provision_concurrency=2,
        engine_image=image,
        engine_grace_period_s=0,
        unhealthy_engine_timeout_s=1e6,
        provision_wait_s=1e6,
        circuit_breaker_failure_threshold=2,
        circuit_breaker_recovery_timeout_s=10,
        circuit_breaker_max_backoff_s=40,
        docker_timeout_s=5,
        gateway_instance_name="stateful",
    )


def run_settings() -> hypothesis_settings:
    """How hypothesis runs a fleet machine by default (well under a minute)."""
    return hypothesis_settings(
        max_examples=500,
        stateful_step_count=30,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
    )


def replay(machine_class: type[FleetMachine], *steps: tuple[str, dict[str, Any]]) -> None:
    """Run a sequence a machine found, checking every invariant after each step."""
    machine = machine_class()
    try:
        machine.check_all()
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.check_all()
    finally:
        machine.teardown()
