"""Starting engine containers: the image, one host port each, several at once, and the breaker.

The rules of provisioning live together here. Failures that say something about engines (the
image cannot be pulled, Docker refuses the container, a new engine never becomes ready) count
toward the circuit breaker, which pauses provisioning when they keep coming. Failures that say
something only about a port or a name (another program holds the port, a container of someone
else has the name) set that port aside for a while and try another. A leftover container of ours
in the way is removed. Docker being unreachable is neither: the pass fails and is retried.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..logs import get_logger
from ..metrics import Metrics
from ..settings import Settings
from .breaker import BreakerState, CircuitBreaker
from .docker import UNREACHABLE, DockerEngines, FleetError
from .ports import PortAllocator, PortsExhausted, is_bind_failure
from .specs import (
    LABEL_INSTANCE,
    LABEL_MANAGED,
    LABEL_VPN,
    ContainerRecord,
    Namespace,
    container_name,
    create_body,
)
from .vpns import Vpns

log = get_logger(__name__)

_START_ATTEMPTS = 3  # ports tried for one engine when ports or names are taken
_NAME_TAKEN = "already in use"  # Docker's 409 when a container name exists

Started = Callable[[ContainerRecord, int], None]


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
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._docker = docker
        self._pool = pool
        self._ports = ports
        self._on_started = on_started
        self._vpns = vpns
        self._starting: Counter[str] = Counter()  # VPN -> engines being started behind it
        self.breaker = CircuitBreaker(
            threshold=settings.circuit_breaker_failure_threshold,
            recovery_s=settings.circuit_breaker_recovery_timeout_s,
            max_backoff_s=settings.circuit_breaker_max_backoff_s,
        )
        self._attempts: set[str] = set()  # started engines whose readiness is still to come
        self._last_failure = ""
        self._ports_exhausted = False

    async def provision(self, wanted: int) -> None:
        """Start up to ``wanted`` engines, as many as the breaker lets through.

        Raises :class:`FleetError` when the image cannot be had or Docker cannot be reached.
        """
        if wanted < 1:
            self._pool.unblock(BlockedReason.IMAGE_UNAVAILABLE)
            return
        allowed = self.breaker.permits(wanted)
        if allowed < 1:
            return
        if self.breaker.state is BreakerState.HALF_OPEN:
            log.info("provisioning_breaker_half_open", trial_engines=allowed)
        try:
            await self._docker.ensure_image(self._settings.engine_image)
        except FleetError as exc:
            self._image_failed(exc)
            raise
        self._pool.unblock(BlockedReason.IMAGE_UNAVAILABLE)
        unreachable = await self._start_engines(allowed)
        if unreachable is not None:
            raise unreachable

    def attempt_done(self, engine_id: str, *, ok: bool, reason: str = "") -> None:
        """A started engine became ready (``ok``), or never will; others are ignored."""
        if engine_id not in self._attempts:
            return  # adopted, or already decided
        self._attempts.discard(engine_id)
        if ok:
            self._succeeded()
        else:
            self._failed(reason)

    def publish(self) -> None:
        """Show the breaker in the pool's provisioning blocks: blocked while not closed."""
        if self.breaker.state is BreakerState.CLOSED:
            self._pool.unblock(BlockedReason.CIRCUIT_BREAKER)
            return
        message = (
            f"engines keep failing to start (last: {self._last_failure}); "
            f"provisioning paused, next attempt within {self.breaker.open_for_s:g} s"
        )
        self._pool.block(BlockedReason.CIRCUIT_BREAKER, message, eta_s=self.breaker.eta_s())

    # --- starting -------------------------------------------------------------------------------

    def _image_failed(self, exc: FleetError) -> None:
        message = f"cannot provision engines: {exc.message}"
        if exc.status == UNREACHABLE:
            self.breaker.give_back()
            self._pool.block(BlockedReason.DOCKER_UNAVAILABLE, message)
            return
        self._pool.block(BlockedReason.IMAGE_UNAVAILABLE, message)
        self._failed(f"image {self._settings.engine_image}: {exc.message}")

    async def _start_engines(self, count: int) -> FleetError | None:
        """Start ``count`` engines, at most PROVISION_CONCURRENCY at a time, each on its own port;
        returns the error if Docker could not be reached."""
        limit = asyncio.Semaphore(self._settings.provision_concurrency)

        async def start_one() -> FleetError | None:
            async with limit:
                return await self._start_engine()

        async with asyncio.TaskGroup() as group:
            starts = [group.create_task(start_one(), name="engine start") for _ in range(count)]
        return next((e for e in (t.result() for t in starts) if e is not None), None)

    def _place(self) -> tuple[int, Namespace | None] | None:
        """A port for a new engine (held as "starting") and, in VPN mode, the namespace it joins
        (the same allocator in every mode, within the chosen VPN's share); None when no VPN can
        take an engine now. Raises :class:`PortsExhausted`."""
        if self._vpns is None:
            return self._ports.reserve("starting"), None
        placed = self._vpns.place(self._ports, self._starting)
        if placed is not None:
            self._starting[placed[1].labels[LABEL_VPN]] += 1
        return placed

    def _placed_done(self, namespace: Namespace | None) -> None:
        if namespace is not None and self._vpns is not None:
            self._starting[namespace.labels[LABEL_VPN]] -= 1
            self._vpns.started(namespace)

    async def _start_engine(self) -> FleetError | None:
        for _ in range(_START_ATTEMPTS):
            try:
                placed = self._place()
            except PortsExhausted as exc:
                self._no_port(str(exc))
                return None
            if placed is None:
                self.breaker.give_back()  # no VPN can take one: the reconciler blocks and says why
                return None
            port, namespace = placed
            self._ports_exhausted = False
            try:
                return await self._create(port, namespace)
            except _TryAnotherPort:
                continue
            finally:
                self._placed_done(namespace)
        self.breaker.give_back()  # every port tried was someone else's: says nothing of engines
        return None

    async def _create(self, port: int, namespace: Namespace | None) -> FleetError | None:
        """Create and start the engine on its reserved port; raises :class:`_TryAnotherPort`."""
        try:
            record = await self._docker.run(
                container_name(self._settings, port),
                create_body(self._settings, port, namespace),
            )
        except FleetError as exc:
            if await self._port_or_name_problem(port, exc):
                raise _TryAnotherPort from None
            self._ports.release(port)  # no container was made (a half-made one was removed)
            if namespace is not None and _namespace_gone(exc.message):
                # The VPN container stopped or went since the pass looked: says nothing of engines.
                log.warning("engine_vpn_namespace_gone", port=port, reason=exc.message)
                self.breaker.give_back()
                return None
            if exc.status == UNREACHABLE:
                self.breaker.give_back()
                return exc
            log.warning("engine_create_failed", port=port, reason=exc.message)
            self._failed(f"create on port {port}: {exc.message}")
            return None
        self._ports.rename(port, record.id)
        self._attempts.add(record.id)
        log.info("engine_started", engine=record.name, port=port, **_placement(namespace))
        self._on_started(record, port)
        return None

    async def _port_or_name_problem(self, port: int, exc: FleetError) -> bool:
        """Handle a failure that says nothing about engines; True when worth another port."""
        if is_bind_failure(exc.message):
            log.warning("engine_port_unusable", port=port, retry_after_s=self._ports.recheck_s)
            self._ports.set_aside(port)
            return True
        if exc.status != 409 or _NAME_TAKEN not in exc.message:
            return False
        name = container_name(self._settings, port)
        leftover = await self._docker.find(name)
        if leftover is not None and self._is_ours(leftover):
            self._ports.release(port)
            return await self._remove_leftover(leftover)
        log.warning("engine_name_taken", engine=name, port=port)
        self._ports.set_aside(port)  # the name goes with the port: try another one for a while
        return True

    def _is_ours(self, record: ContainerRecord) -> bool:
        """A container of this instance that the pool does not know (a half-made leftover)."""
        labels = record.labels
        return (
            labels.get(LABEL_MANAGED) == "true"
            and labels.get(LABEL_INSTANCE) == self._settings.gateway_instance_name
            and self._pool.get(record.id) is None
        )

    async def _remove_leftover(self, record: ContainerRecord) -> bool:
        try:
            await self._docker.remove(record.id)
        except FleetError as exc:
            if exc.status == UNREACHABLE:
                raise
            log.warning("engine_remove_failed", engine=record.name, reason=exc.message)
            return False
        log.info("engine_leftover_removed", engine=record.name, state=record.state)
        return True

    def _no_port(self, reason: str) -> None:
        self.breaker.give_back()
        if not self._ports_exhausted:
            log.warning("engine_ports_exhausted", reason=reason, aside=self._ports.aside)
        self._ports_exhausted = True

    # --- the breaker ----------------------------------------------------------------------------

    def _succeeded(self) -> None:
        was = self.breaker.state
        self.breaker.record_success()
        if was is not BreakerState.CLOSED:
            log.info("provisioning_breaker_closed")
        self.publish()

    def _failed(self, reason: str) -> None:
        self._last_failure = reason
        self._metrics.provisioning_failures.inc()
        if self.breaker.record_failure():
            log.warning(
                "provisioning_breaker_opened",
                reason=reason,
                open_for_s=self.breaker.open_for_s,
                openings=self.breaker.openings,
            )
        self.publish()


class _TryAnotherPort(Exception):
    """The port (or its container name) is someone else's: worth another port."""


def _placement(namespace: Namespace | None) -> dict[str, object]:
    if namespace is None:
        return {}
    return {"vpn": namespace.labels[LABEL_VPN], "p2p_port": namespace.p2p_port}


def _namespace_gone(message: str) -> bool:
    """Whether Docker refused to join a VPN container's namespace because it is not running."""
    text = message.lower()
    return "non running container" in text or "no such container" in text
