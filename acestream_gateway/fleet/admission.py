"""The one admission point for engines: the only way an engine container comes to exist.

Every start (the plan's, an operator's, a replacement's) first takes, in one synchronous step, a
slot under ``MAX_ACTIVE_REPLICAS``, a host port and a breaker permit, as one :class:`Reservation`.
The reservation ends exactly once: it becomes a held container (the port renamed to the container
id, the slot now counted as that container), or gives everything back (the port freed or set
aside, a half-open breaker's trial returned when the attempt said nothing about engines). Used as
a context manager it cannot be forgotten: one still open when its block ends is given back, or,
when its create was sent and no answer came, kept *in doubt* for the ledger heal.

Slots count containers of ours that exist, running or not, until Docker says they are gone, plus
live reservations (rule 6: the limit counts containers at once, always); adopted ones count too.

Docker is the truth and the ledger heals: every reconcile pass hands its listing to :meth:`heal`.
A reservation in doubt whose container is listed (by its name) becomes a held container; one whose
container is not listed after its deadline is freed; a held container Docker no longer lists frees
its slot and port. Each repair is logged (``ledger_repaired``) and counted in metrics, so a leak
lasts at most one pass. Containers destroyed since a listing began are left out of it, so a stale
listing cannot bring back a container that is gone.

The slot count is global (:class:`~.endpoints.FleetSlots`, shared by the admission points of
every Docker endpoint) and each endpoint's ``max_engines`` caps its own share; the ports are the
allocator's of the admission point's endpoint, handed to each reservation so that it gives them
back where it took them.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from .breaker import BreakerState, CircuitBreaker
from .docker import FleetError
from .endpoints import FleetSlots
from .ports import PortAllocator, PortsExhausted, is_bind_failure
from .specs import LABEL_VPN, ContainerRecord, Namespace, container_name
from .vpns import Vpns

log = get_logger(__name__)

NAME_TAKEN = "already in use"  # Docker's 409 when a container name exists


class Verdict(enum.Enum):
    """What a failed Docker call says, decided in one place (:func:`classify`)."""

    ENGINE = "engine"  # about engines (image, create body, engine): counts against the breaker
    DOCKER = "docker"  # Docker slow or unreachable: says nothing of engines
    PORT = "port"  # the port, or the container name that goes with it, is someone else's
    NEUTRAL = "neutral"  # says nothing of engines (a VPN namespace went away)


def classify(exc: FleetError) -> Verdict:
    """The verdict of one failed Docker call on the way to an engine."""
    if exc.unreachable:
        return Verdict.DOCKER
    if is_bind_failure(exc.message) or (exc.status == 409 and NAME_TAKEN in exc.message):
        return Verdict.PORT
    text = exc.message.lower()
    if "non running container" in text or "no such container" in text:
        return Verdict.NEUTRAL  # the VPN container to join stopped or went
    return Verdict.ENGINE


class Refusal(enum.Enum):
    FULL = "full"  # MAX_ACTIVE_REPLICAS containers and reservations exist
    BREAKER = "breaker"  # the circuit breaker permits no attempt now
    NO_PORT = "no_port"  # every port is held or set aside
    NO_VPN = "no_vpn"  # VPN mode: no VPN can take an engine now


class NotAdmitted(Exception):
    """No engine may be started now, and why."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


@dataclass(frozen=True, slots=True)
class Listing:
    """When a listing of Docker's containers began (the ledger's generation and clock)."""

    generation: int
    at: float


class _State(enum.Enum):
    OPEN = "open"
    IN_DOUBT = "in_doubt"
    CLOSED = "closed"


class Reservation:
    """A slot, a port and a breaker permit for one engine start; ends exactly once."""

    def __init__(
        self, admission: Admission, port: int, namespace: Namespace | None, trial: int
    ) -> None:
        self._admission = admission
        self.ports = admission.ports  # the allocator (of one Docker endpoint) it took the port from
        self.port = port
        self.namespace = namespace
        self.trial = trial  # the number of the half-open breaker's trial it holds, or 0
        self.name = container_name(admission.settings, port)
        self.deadline: float | None = None  # set when the create is sent
        self.state = _State.OPEN

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.state is not _State.OPEN:
            return
        if self.deadline is not None:
            self.in_doubt()  # the create went out and no answer came: Docker may have made it
        else:
            self.give_back()

    def sent(self) -> None:
        """The create request goes out now: from here on Docker may make the container."""
        self.deadline = self._admission.clock() + self._admission.settings.docker_timeout_s

    def held(self, container_id: str) -> int:
        """Its container exists: the port and slot are now the container's. The number of the
        breaker's trial it held, or 0 (the engine's readiness now decides the trial)."""
        self._admission._hold_reserved(self, container_id)
        return self.trial

    def give_back(self, *, aside: bool = False) -> None:
        """The attempt said nothing about engines: everything back (``aside``: the port failed
        to bind or its name is taken, skip it for a while)."""
        self._admission._give_back(self, aside=aside, trial=True)

    def failed(self, reason: str) -> None:
        """The attempt failed for a reason that says something about engines: the port back, the
        failure counted by the breaker (which takes the trial with it)."""
        if self._admission._give_back(self, aside=False, trial=False):
            self._admission.on_failure(reason)

    def in_doubt(self) -> None:
        """No answer to the create: kept (slot and port) until the ledger heal knows."""
        if self.state is _State.OPEN:
            self.state = _State.IN_DOUBT
            if self.deadline is None:
                self.sent()


class Admission:
    """The slots, ports and breaker permits of engine starts; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        ports: PortAllocator,
        breaker: CircuitBreaker,
        on_failure: Callable[[str], None],
        vpns: Vpns | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        slots: FleetSlots | None = None,
        share: int | None = None,
    ) -> None:
        """``slots``: the fleet's slots, shared with the other endpoints' admission points (a
        fleet of its own without); ``share``: the most engines of this endpoint (its
        ``max_engines``; MAX_ACTIVE_REPLICAS without)."""
        self.settings = settings
        self.ports = ports
        self.breaker = breaker
        self.on_failure = on_failure
        self.clock = clock
        self._vpns = vpns
        self._metrics = metrics or Metrics()
        self._held: dict[str, int] = {}  # container id -> port
        self._held_at: dict[str, int] = {}  # container id -> generation it was held in
        self._reservations: list[Reservation] = []
        self._starting: Counter[str] = Counter()  # VPN -> reservations behind it
        self._destroyed: dict[str, int] = {}  # container id -> generation it was destroyed in
        self._generation = 0
        self.slots = slots or FleetSlots(settings.max_active_replicas)
        self.slots.join(self)
        self.share = settings.max_active_replicas if share is None else share
        self.unlisted = False  # see :attr:`counted`

    # --- counting ------------------------------------------------------------------------------

    @property
    def taken(self) -> int:
        """Slots taken: containers of ours that exist plus live reservations."""
        return len(self._held) + len(self._reservations)

    @property
    def counted(self) -> int:
        """Slots of MAX_ACTIVE_REPLICAS this endpoint takes: ``taken``, or its whole share while
        it is ``unlisted`` (its containers not listed since the gateway started: how many of ours
        run there is not known, so neither it nor the other endpoints may take those places)."""
        return max(self.taken, self.share) if self.unlisted else self.taken

    def room(self) -> int:
        """Engines that may still start here: the fleet's free slots, bounded by this
        endpoint's free share."""
        return max(0, min(self.slots.room(), self.share - self.counted))

    @property
    def held(self) -> dict[str, int]:
        """Containers that hold a slot, with their ports."""
        return dict(self._held)

    @property
    def reservations(self) -> list[Reservation]:
        return list(self._reservations)

    # --- admitting -----------------------------------------------------------------------------

    def admit(self) -> Reservation:
        """A slot, a port and a breaker permit, all at once or none; raises :class:`NotAdmitted`.

        Synchronous: nothing can take the same slot or port between the check and the take."""
        limit = self.slots.limit
        if self.slots.taken >= limit:
            raise NotAdmitted(Refusal.FULL, f"the fleet is at MAX_ACTIVE_REPLICAS ({limit})")
        if self.counted >= self.share:
            where = self.settings.endpoint_name
            raise NotAdmitted(
                Refusal.FULL, f"endpoint {where} is at its max_engines ({self.share})"
            )
        half_open = self.breaker.state is BreakerState.HALF_OPEN
        if self.breaker.permits(1) < 1:
            raise NotAdmitted(Refusal.BREAKER, "the circuit breaker pauses provisioning")
        trial = self.breaker.trials if half_open else 0
        try:
            placed = self._place()
        except PortsExhausted as exc:
            self._return_trial(trial)
            raise NotAdmitted(Refusal.NO_PORT, str(exc)) from None
        if placed is None:
            self._return_trial(trial)
            raise NotAdmitted(Refusal.NO_VPN, "no VPN can take an engine now")
        port, namespace = placed
        if namespace is not None:
            self._starting[namespace.labels[LABEL_VPN]] += 1
        reservation = Reservation(self, port, namespace, trial)
        self._reservations.append(reservation)
        return reservation

    def _place(self) -> tuple[int, Namespace | None] | None:
        if self._vpns is None:
            return self.ports.reserve("starting"), None
        return self._vpns.place(self.ports, self._starting)

    def _return_trial(self, trial: int) -> None:
        if trial:
            self.breaker.give_back(trial)

    # --- ending reservations -------------------------------------------------------------------

    def _hold_reserved(self, reservation: Reservation, container_id: str) -> None:
        if self._end(reservation):
            reservation.ports.rename(reservation.port, container_id)
            self._held[container_id] = reservation.port
            self._held_at[container_id] = self._generation

    def _give_back(self, reservation: Reservation, *, aside: bool, trial: bool) -> bool:
        if not self._end(reservation):
            return False
        if aside:
            reservation.ports.set_aside(reservation.port)
        else:
            reservation.ports.release(reservation.port)
        if trial:
            self._return_trial(reservation.trial)
        return True

    def _end(self, reservation: Reservation) -> bool:
        """Close a reservation; False when it was already closed (exactly once)."""
        if reservation.state is _State.CLOSED:
            return False
        reservation.state = _State.CLOSED
        self._reservations.remove(reservation)
        namespace = reservation.namespace
        if namespace is not None:
            self._starting[namespace.labels[LABEL_VPN]] -= 1
            if self._vpns is not None:
                self._vpns.started(namespace)
        return True

    # --- containers ----------------------------------------------------------------------------

    def hold(self, container_id: str, port: int) -> bool:
        """A container of ours exists (adopted, or left to remove) on ``port``: it takes a slot
        and the port; False when the port is another's."""
        if not self.ports.claim(port, container_id):
            return False
        self._held[container_id] = port
        self._held_at.setdefault(container_id, self._generation)
        return True

    def gone(self, container_id: str) -> None:
        """The container no longer exists: its slot and port are free."""
        port = self._held.pop(container_id, None)
        self._held_at.pop(container_id, None)
        if port is not None and self.ports.held.get(port) == container_id:
            self.ports.release(port)

    def destroyed(self, container_id: str) -> None:
        """Docker reported the container destroyed: gone, and never brought back by a listing
        that began before now."""
        self._destroyed[container_id] = self._generation
        self.gone(container_id)

    # --- healing -------------------------------------------------------------------------------

    def listing(self) -> Listing:
        """A listing of Docker's containers begins now."""
        self._generation += 1
        return Listing(self._generation, self.clock())

    def heal(self, listing: Listing, records: Iterable[ContainerRecord]) -> list[ContainerRecord]:
        """Make the ledger agree with Docker's listing; the listing without containers
        destroyed since it began."""
        self.unlisted = False
        fresh = [r for r in records if r.id not in self._destroyed]
        self._destroyed = {i: g for i, g in self._destroyed.items() if g >= listing.generation}
        by_name = {r.name: r for r in fresh}
        for reservation in self.reservations:
            if reservation.state is _State.IN_DOUBT:
                self._settle(reservation, by_name.get(reservation.name), listing)
        listed = {r.id for r in fresh}
        for container_id, generation in list(self._held_at.items()):
            if container_id not in listed and generation < listing.generation:
                self.gone(container_id)
                self._repaired("held_gone", container=container_id)
        return fresh

    def _settle(
        self, reservation: Reservation, found: ContainerRecord | None, listing: Listing
    ) -> None:
        if found is not None:
            self._return_trial(reservation.held(found.id))  # a slow Docker says nothing
            self._repaired("reservation_adopted", container=found.id, port=reservation.port)
        elif reservation.deadline is not None and listing.at >= reservation.deadline:
            reservation.give_back()
            self._repaired("reservation_expired", port=reservation.port)

    def _repaired(self, kind: str, **detail: object) -> None:
        self._metrics.ledger_repairs.labels(kind).inc()
        log.warning("ledger_repaired", kind=kind, **detail)
