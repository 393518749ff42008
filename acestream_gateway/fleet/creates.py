"""Creating one engine container on its reservation, and what a failed create means.

The create either makes the container (the caller turns the reservation into a held container
before anything else can run), or ends the reservation on every path before the next Docker call:
given back when the failure says nothing about engines, set aside when the port or its name is
someone else's (a leftover of ours in the way is removed), counted as a failure when it says
something about engines, and kept in doubt when Docker gave no answer (the next listing settles
it). What a failure means is ``admission.classify``'s to say.
"""

from __future__ import annotations

from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..settings import Settings
from .admission import Admission, Reservation, Verdict, classify
from .blocks import Blocks
from .docker import TIMED_OUT, DockerEngines, FleetError
from .ports import PortAllocator, is_bind_failure
from .specs import LABEL_INSTANCE, LABEL_MANAGED, ContainerRecord, create_body

log = get_logger(__name__)


class AnotherPort:
    """The port (or its container name) is someone else's: worth another port."""


ANOTHER_PORT = AnotherPort()
Outcome = ContainerRecord | FleetError | AnotherPort | None


def docker_block_message(exc: FleetError) -> str:
    """What players and the status are told while Docker is slow or away (no address in it)."""
    if exc.status == TIMED_OUT:
        return "Docker is too slow to answer in time: no new engine can be started now"
    return "the Docker API cannot be reached: no new engine can be started"


class EngineCreator:
    """Creates engine containers on reservations; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        ports: PortAllocator,
        admission: Admission,
        blocks: Blocks | None = None,
    ) -> None:
        """``blocks``: where its endpoint's blocks go (the pool, with one endpoint)."""
        self._settings = settings
        self._blocks: Blocks = blocks or pool
        self._docker = docker
        self._pool = pool
        self._ports = ports
        self._admission = admission

    async def create(self, reservation: Reservation) -> Outcome:
        """Create and start the engine on its reservation: the container, another port to try,
        the error when Docker could not be reached, or None."""
        port, namespace = reservation.port, reservation.namespace
        reservation.sent()
        try:
            record = await self._docker.run(
                reservation.name, create_body(self._settings, port, namespace)
            )
        except FleetError as exc:
            return await self._create_failed(reservation, exc)
        return record

    async def _create_failed(self, reservation: Reservation, exc: FleetError) -> Outcome:
        port = reservation.port
        verdict = classify(exc)
        if verdict is Verdict.DOCKER:
            reservation.in_doubt()  # Docker may have made it: the next listing tells
            self._blocks.block(BlockedReason.DOCKER_UNAVAILABLE, docker_block_message(exc))
            return exc
        if verdict is Verdict.NEUTRAL:
            log.warning("engine_vpn_namespace_gone", port=port, reason=exc.message)
            reservation.give_back()
            return None
        if verdict is Verdict.ENGINE:
            log.warning("engine_create_failed", port=port, reason=exc.message)
            reservation.failed(f"create on port {port}: {exc.message}")
            return None
        if is_bind_failure(exc.message):
            log.warning("engine_port_unusable", port=port, retry_after_s=self._ports.recheck_s)
            reservation.give_back(aside=True)
            return ANOTHER_PORT
        return await self._name_taken(reservation)

    async def _name_taken(self, reservation: Reservation) -> Outcome:
        """Docker refused the name: a leftover of ours is removed, another's sets the port aside.
        Either way the create made nothing, so the reservation ends before the next call."""
        name = reservation.name
        try:
            leftover = await self._docker.find(name)
        except FleetError as exc:
            reservation.give_back()
            return self._call_failed(exc, name)
        if leftover is None or not self._is_ours(leftover):
            log.warning("engine_name_taken", engine=name, port=reservation.port)
            reservation.give_back(aside=True)  # the name goes with the port: try another one
            return ANOTHER_PORT
        reservation.give_back()
        try:
            await self._docker.remove(leftover.id)
        except FleetError as exc:
            return self._call_failed(exc, name)
        log.info("engine_leftover_removed", engine=leftover.name, state=leftover.state)
        return ANOTHER_PORT

    def _call_failed(self, exc: FleetError, name: str) -> FleetError | None:
        """A Docker call beside the create failed: unreachable is the pass's, the rest logged."""
        if classify(exc) is Verdict.DOCKER:
            return exc
        log.warning("engine_name_check_failed", engine=name, reason=exc.message)
        return None

    def _is_ours(self, record: ContainerRecord) -> bool:
        """A container of this instance that the pool does not know (a half-made leftover)."""
        labels = record.labels
        return (
            labels.get(LABEL_MANAGED) == "true"
            and labels.get(LABEL_INSTANCE) == self._settings.gateway_instance_name
            and self._pool.get(record.id) is None
            and record.id not in self._admission.held
        )
