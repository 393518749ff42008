"""Starting one engine on its reservation, on another port when its port or name is taken.

The create itself, and what a failed one means, is ``creates.py``'s. When the port (or the
container name that goes with it) is someone else's, the start takes a new reservation from the
admission point and tries again, a few ports at most: ports that are not ours say nothing of
engines. A container that was made is held under its id at once, its start becomes an attempt
(``start_attempts.py``) and it is handed on with its port.
"""

from __future__ import annotations

from collections.abc import Callable

from ..engines.pool import EnginePool
from ..logs import get_logger
from ..settings import Settings
from .admission import Admission, NotAdmitted, Reservation
from .blocks import Blocks
from .creates import AnotherPort, EngineCreator
from .docker import DockerEngines, FleetError
from .ports import PortAllocator
from .specs import LABEL_P2P_PORT, LABEL_VPN, ContainerRecord
from .start_attempts import StartAttempts

log = get_logger(__name__)

_START_ATTEMPTS = 3  # ports tried for one engine when ports or names are taken

Started = Callable[[ContainerRecord, int], None]
"""Told of a started container and its port (held under the container's id)."""

Refused = Callable[[NotAdmitted], None]
"""Told when the admission point refused another port."""


class EngineStart:
    """Starts one engine at a time on its reservation; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        docker: DockerEngines,
        pool: EnginePool,
        ports: PortAllocator,
        admission: Admission,
        blocks: Blocks,
        attempts: StartAttempts,
        on_started: Started,
        on_refused: Refused,
    ) -> None:
        self._admission = admission
        self._attempts = attempts
        self._on_started = on_started
        self._on_refused = on_refused
        self._creator = EngineCreator(
            settings=settings,
            docker=docker,
            pool=pool,
            ports=ports,
            admission=admission,
            blocks=blocks,
        )

    async def start(self, reservation: Reservation) -> ContainerRecord | FleetError | None:
        """One engine on its reservation, on another port when the port or name is taken: the
        container, the error when Docker could not be reached, or None."""
        for attempt in range(_START_ATTEMPTS):
            if attempt:
                try:
                    reservation = self._admission.admit()
                except NotAdmitted as exc:
                    self._on_refused(exc)
                    return None
            with reservation:
                outcome = await self._creator.create(reservation)
                if isinstance(outcome, ContainerRecord):
                    self._started(reservation, outcome)
            if not isinstance(outcome, AnotherPort):
                return outcome
        return None  # every port tried was someone else's: says nothing of engines

    def _started(self, reservation: Reservation, record: ContainerRecord) -> None:
        self._attempts.begin(record.id, reservation.held(record.id))
        log.info("engine_started", engine=record.name, port=reservation.port, **_placement(record))
        self._on_started(record, reservation.port)


def _placement(record: ContainerRecord) -> dict[str, object]:
    if LABEL_VPN not in record.labels:
        return {}
    return {"vpn": record.labels[LABEL_VPN], "p2p_port": record.labels.get(LABEL_P2P_PORT)}
