"""Engine containers into the pool: one listing of an endpoint's containers (rule 5), and the
containers its provisioner starts.

A running engine container found by its labels is adopted, never wiped: its port is held under
its id (rule 4) and it joins the pool (probed until ready if it has not answered yet). One whose
port lies outside PORT_RANGE_HOST, or that may carry sessions a dead gateway left, is adopted out
of selection and replaced once empty. Exited containers, unadoptable ones and engines stranded in
a VPN namespace that is no longer the one engines must be in are removed (their port held until
they are gone). An engine whose container stopped or is no longer listed leaves the pool, and the
port of a container no longer listed is free. A container the provisioner started joins the pool
as STARTING and is probed until ready.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ..engines.model import Engine, EngineState
from ..engines.pool import EnginePool
from ..engines.recovery import LeftSessions
from ..logs import get_logger
from ..settings import Settings
from .admission import Admission
from .docker_vpn import VpnSide
from .event_reactions import EventReactions
from .ports import PortAllocator
from .readiness import ReadinessProbes
from .specs import ContainerRecord, engine_address

log = get_logger(__name__)


class Backend(Protocol):
    """What adoption asks of its endpoint's backend (``docker_backend.DockerBackend``)."""

    def engines(self) -> list[Engine]: ...

    def engine_died(self, container_id: str, reason: str) -> None: ...

    async def remove_container(self, container_id: str, name: str, why: str) -> bool: ...


class Adoption:
    """Adopts and removes one endpoint's containers as a listing shows them; see the module
    docstring."""

    def __init__(
        self,
        *,
        backend: Backend,
        name: str,
        settings: Settings,
        pool: EnginePool,
        admission: Admission,
        ports: PortAllocator,
        vpn: VpnSide,
        probes: ReadinessProbes,
        reactions: EventReactions,
        adopted: asyncio.Event,
        left_sessions: LeftSessions | None,
    ) -> None:
        """``name`` and ``settings``: the endpoint's; ``adopted``: set once the first pass adopted
        what it found; ``left_sessions``: what the start knows of sessions a dead gateway left on
        engines."""
        self._backend = backend
        self._name = name
        self._settings = settings
        self._pool = pool
        self._admission = admission
        self._ports = ports
        self._vpn = vpn
        self._probes = probes
        self._reactions = reactions
        self._adopted = adopted
        self._left_sessions = left_sessions

    async def sync(self, records: list[ContainerRecord]) -> None:
        """Make the pool agree with ``records`` (the endpoint's containers, healed listing)."""
        listed = {r.id for r in records}
        running = {r.id for r in records if r.running}
        for engine in self._backend.engines():
            if engine.id not in running:
                self._backend.engine_died(engine.id, "its container is not running")
            if engine.id not in listed:
                self._admission.gone(engine.id)
        for record in records:  # each counts at once (rule 6), before the awaits below
            self._hold_port(record)
        for record in records:
            stranded = self._vpn.stranded(record.labels) if record.running else None
            if stranded is not None:
                log.warning("engine_stranded", engine=record.name, reason=stranded)
            if not record.running or stranded is not None:
                self._hold_port(record)  # until the container is gone, whatever its state
                why = stranded or f"container {record.state}"
                await self._backend.remove_container(record.id, record.name, why)
            elif self._pool.get(record.id) is None:
                await self.adopt(record)
        self.free_ports_of_gone(records)

    def free_ports_of_gone(self, records: list[ContainerRecord]) -> None:
        """Ports of engines that left the pool earlier (their container died) and whose
        container is no longer listed: the container is gone, so the port is free."""
        listed = {r.id for r in records}
        for container_id in self._admission.held:
            if container_id not in listed and self._pool.get(container_id) is None:
                self._reactions.removed(container_id)
                self._admission.gone(container_id)

    async def adopt(self, record: ContainerRecord) -> None:
        """Take a running engine container found by its labels into the pool."""
        port = record.port
        if port is None or not self._admission.hold(record.id, port):
            log.warning("engine_unadoptable", engine=record.name, port=port)
            await self._backend.remove_container(record.id, record.name, "unadoptable")
            return
        engine = self._engine(record, port, created_at=record.created)
        if not self._ports.in_range(port):
            # Kept out of selection and removed once it carries nothing: its port belongs to an
            # older configuration, and PORT_RANGE_HOST is what the operator asked for now.
            engine.state = EngineState.DRAINING
            log.warning("engine_port_outside_range", engine=record.name, port=port)
        elif not self._accounted(engine):
            # It may carry sessions a dead gateway left, which nobody reads but which count
            # against its limit all the same: out of selection, replaced once empty (at once).
            engine.state = EngineState.DRAINING
            log.warning("engine_sessions_unaccounted", engine=record.name, port=port)
        self._pool.add(engine)
        log.info("engine_adopted", engine=record.name, port=port)
        if engine.state is EngineState.STARTING:
            self._probes.probe(engine)

    def started(self, record: ContainerRecord, port: int) -> None:
        """A container the provisioner started (its port held through the admission point): in
        the pool as STARTING, probed until ready."""
        engine = self._engine(record, port, created_at=time.time())
        self._pool.add(engine)
        self._probes.probe(engine)

    def _engine(self, record: ContainerRecord, port: int, *, created_at: float) -> Engine:
        return Engine(
            id=record.id,
            name=record.name,
            address=self._vpn.address(record.labels, port) or engine_address(self._settings, port),
            endpoint=self._name,
            created_at=created_at,
            labels=record.labels,
        )

    def _accounted(self, engine: Engine) -> bool:
        """Whether an engine found at start carries no session the gateway does not know of
        (engines adopted later were found by this run, which journals its own sessions)."""
        left = self._left_sessions
        return left is None or self._adopted.is_set() or left.accounts_for(engine.address)

    def _hold_port(self, record: ContainerRecord) -> None:
        port = record.port
        if port is not None:
            self._admission.hold(record.id, port)
