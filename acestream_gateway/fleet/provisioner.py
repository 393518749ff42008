"""Starting engine containers: the image, one host port each, several at once, and the breaker.

The rules of provisioning are told together here; this module starts a batch of engines, one
engine's start is ``engine_start.py``'s (its create ``creates.py``'s), and what starts tell the
breaker is ``start_attempts.py``'s. Every start goes through the admission point
(``admission.py``): a slot, a port and a breaker permit, taken at once and given back exactly
once; what a failed Docker call means is decided in one place (``admission.classify``). Failures
that say something about engines (the image cannot be pulled, Docker refuses the container, a new
engine never becomes ready) count toward the circuit breaker, which pauses provisioning when they
keep coming. Failures that say something only about a port or a name (another program holds the
port, a container of someone else has the name) set that port aside for a while and try another.
A leftover container of ours in the way is removed. Docker being slow or unreachable is neither:
the permit goes back, provisioning is blocked as ``docker_unavailable``, and a create that got no
answer keeps its reservation until the next listing says whether Docker made the container. An
engine the gateway removes itself while it starts is no failure either. One start's failure never
cancels another's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from .admission import Admission, NotAdmitted, Refusal, Reservation, Verdict, classify
from .blocks import Blocks
from .breaker import BreakerState, CircuitBreaker
from .creates import docker_block_message
from .docker import DockerEngines, FleetError
from .endpoints import FleetSlots
from .engine_start import EngineStart, Started
from .ports import PortAllocator
from .specs import ContainerRecord
from .start_attempts import StartAttempts
from .vpns import Vpns

log = get_logger(__name__)


@dataclass(slots=True)
class Provisioned:
    """What one :meth:`Provisioner.provision` did: the containers it started, and why it started
    no more (None when the admission point let every wanted start through)."""

    started: list[ContainerRecord] = field(default_factory=list)
    refused: NotAdmitted | None = None


class Provisioner:
    """Starts engines for the reconciler and keeps the breaker; see the module docstring.

    A started container is handed to ``on_started`` with its port (held under its id) at once;
    whether it becomes ready is reported back through :meth:`attempt_done`.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        ports: PortAllocator,
        on_started: Started,
        vpns: Vpns | None = None,
        metrics: Metrics | None = None,
        blocks: Blocks | None = None,
        slots: FleetSlots | None = None,
        share: int | None = None,
    ) -> None:
        """``blocks``: where its endpoint's blocks go (the pool, with one endpoint); ``slots``
        and ``share``: the fleet's slots and this endpoint's part (see :class:`Admission`)."""
        self._settings = settings
        self._blocks: Blocks = blocks or pool
        self._metrics = metrics or Metrics()
        self._docker = docker
        self._ports = ports
        self.breaker = CircuitBreaker(
            threshold=settings.circuit_breaker_failure_threshold,
            recovery_s=settings.circuit_breaker_recovery_timeout_s,
            max_backoff_s=settings.circuit_breaker_max_backoff_s,
        )
        self.attempts = StartAttempts(
            breaker=self.breaker, metrics=self._metrics, blocks=self._blocks
        )
        self.admission = Admission(
            settings=settings,
            ports=ports,
            breaker=self.breaker,
            on_failure=self.attempts.failed,
            vpns=vpns,
            metrics=self._metrics,
            slots=slots,
            share=share,
        )
        self._start = EngineStart(
            settings=settings,
            docker=docker,
            pool=pool,
            ports=ports,
            admission=self.admission,
            blocks=self._blocks,
            attempts=self.attempts,
            on_started=on_started,
            on_refused=self._note_refusal,
        )
        self._ports_exhausted = False

    async def provision(self, wanted: int) -> Provisioned:
        """Start up to ``wanted`` engines, as many as the admission point lets through.

        Raises :class:`FleetError` when the image cannot be had or Docker cannot be reached.
        """
        result = Provisioned()
        if wanted < 1:
            self._blocks.unblock(BlockedReason.IMAGE_UNAVAILABLE)
            return result
        reservations = self._admit(wanted, result)
        if not reservations:
            return result
        if self.breaker.state is BreakerState.HALF_OPEN:
            log.info("provisioning_breaker_half_open", trial_engines=len(reservations))
        try:
            await self._docker.ensure_image(self._settings.engine_image)
        except FleetError as exc:
            self._image_failed(exc, reservations)
            raise
        except BaseException:  # cancelled while pulling: nothing was created
            for reservation in reservations:
                reservation.give_back()
            raise
        self._blocks.unblock(BlockedReason.IMAGE_UNAVAILABLE)
        unreachable = await self._start_engines(reservations, result)
        if unreachable is not None:
            raise unreachable
        return result

    def attempt_done(
        self, engine_id: str, *, ok: bool, reason: str = "", counts: bool = True
    ) -> None:
        """A started engine became ready (``ok``), or never will (:meth:`StartAttempts.done`)."""
        self.attempts.done(engine_id, ok=ok, reason=reason, counts=counts)

    def attempt_withdrawn(self, engine_id: str) -> None:
        """A starting engine was removed by the gateway itself: no failure of provisioning."""
        self.attempts.done(engine_id, ok=False, counts=False)

    def publish(self) -> None:
        """Show the breaker in the pool's provisioning blocks: blocked while not closed."""
        self.attempts.publish()

    # --- starting -------------------------------------------------------------------------------

    def _admit(self, wanted: int, result: Provisioned) -> list[Reservation]:
        """Up to ``wanted`` reservations, stopping at the first refusal (kept in ``result``)."""
        reservations: list[Reservation] = []
        for _ in range(wanted):
            try:
                reservations.append(self.admission.admit())
            except NotAdmitted as exc:
                result.refused = exc
                self._note_refusal(exc)
                break
        if reservations:
            self._ports_exhausted = False
        return reservations

    def _note_refusal(self, exc: NotAdmitted) -> None:
        if exc.refusal is not Refusal.NO_PORT:
            return
        if not self._ports_exhausted:
            log.warning("engine_ports_exhausted", reason=exc.message, aside=self._ports.aside)
        self._ports_exhausted = True

    def _image_failed(self, exc: FleetError, reservations: list[Reservation]) -> None:
        if classify(exc) is Verdict.DOCKER:
            for reservation in reservations:
                reservation.give_back()
            self._blocks.block(BlockedReason.DOCKER_UNAVAILABLE, docker_block_message(exc))
            return
        self._blocks.block(
            BlockedReason.IMAGE_UNAVAILABLE, f"cannot provision engines: {exc.message}"
        )
        first, *others = reservations
        for reservation in others:
            reservation.give_back()
        first.failed(f"image {self._settings.engine_image}: {exc.message}")  # counted once

    async def _start_engines(
        self, reservations: list[Reservation], result: Provisioned
    ) -> FleetError | None:
        """Start the admitted engines, at most PROVISION_CONCURRENCY at a time; one start's
        failure never cancels another. Returns the error if Docker could not be reached."""
        limit = asyncio.Semaphore(self._settings.provision_concurrency)

        async def start_one(reservation: Reservation) -> ContainerRecord | FleetError | None:
            with reservation:
                async with limit:
                    return await self._start.start(reservation)

        starts = [
            asyncio.create_task(start_one(r), name=f"engine start on port {r.port}")
            for r in reservations
        ]
        try:
            outcomes = await asyncio.gather(*starts, return_exceptions=True)
        finally:
            # A start cancelled before its first step never entered its ``with``: its create was
            # never sent, so everything goes back (a no-op for the reservations already ended).
            for reservation in reservations:
                if reservation.deadline is None:
                    reservation.give_back()
        result.started += [o for o in outcomes if isinstance(o, ContainerRecord)]
        crashed = [o for o in outcomes if isinstance(o, BaseException) and not _docker(o)]
        if crashed:
            raise crashed[0]
        return next((o for o in outcomes if isinstance(o, FleetError)), None)


def _docker(outcome: BaseException) -> bool:
    return isinstance(outcome, FleetError)
