"""A small in-memory Docker for fleet tests: containers, events, and the faults real daemons have.

It stands in for :class:`~acestream_gateway.fleet.docker.DockerEngines` (same methods, same
:class:`FleetError` statuses) and keeps containers the way Docker does: a name is taken once, a
create that "times out after creating" leaves its container behind, removal emits a ``destroy``
event (and first, for a running container, a ``die`` that its watchers get before the removal
answers, as a forced removal kills first). Faults are queued per method and consumed one call
at a time:

- ``fail(method, status, message)``: the call raises ``FleetError(status, message)``;
- ``time_out(method, after=True)``: the call raises the 408 of ``DockerEngines._call``, having
  done its work first (``after``) or not (before);
- ``slow(method, seconds)``: the call sleeps first (cancellable, like a real request);
- ``hold(method, late=False)``: the call waits until the returned :class:`asyncio.Event` is set,
  before its work or (``late``) after it: a listing held late is stale when it arrives.

``down = True`` is the daemon gone: every call fails as unreachable, its event streams break
(their watchers get the same error) and nothing that happens to its containers meanwhile is
reported; ``wait_up`` returns once it is back. ``observers`` are told of every call (its method)
as it is made.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from acestream_gateway.fleet.docker import (
    TIMED_OUT,
    UNREACHABLE,
    ContainerEvent,
    DockerEngines,
    Filters,
    FleetError,
)
from acestream_gateway.fleet.specs import ContainerRecord


@dataclass
class _Fault:
    status: int = 0
    message: str = ""
    after: bool = False  # a timeout after the work was done
    delay_s: float = 0.0
    gate: asyncio.Event | None = None
    late: bool = False  # the delay or gate comes after the work


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    state: str = "running"
    body: dict[str, Any] = field(default_factory=dict)

    def record(self) -> ContainerRecord:
        return ContainerRecord(self.id, self.name, self.state, dict(self.labels), 1.0)


_DAEMONS = itertools.count(1)


class FakeDocker(DockerEngines):
    """See the module docstring. ``calls`` lists every call made, by method name."""

    def __init__(self, *, images: tuple[str, ...] = ()) -> None:  # no aiodocker client at all
        self.timeout_s = 30.0
        self.containers: dict[str, FakeContainer] = {}
        self.images = set(images)
        self.pullable = True
        self.calls: list[str] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._ids = itertools.count(1)
        # Docker's ids are random, so distinct daemons never share one; so are the fakes'.
        self._daemon = next(_DAEMONS)
        # Each watcher's queue, and the labels its filters ask for (Docker filters events so).
        self._watchers: list[tuple[asyncio.Queue[ContainerEvent | None], dict[str, str]]] = []
        self._down = False
        self._up: asyncio.Event | None = None  # made on first wait, in the loop that waits
        self.observers: list[Callable[[str], None]] = []

    @property
    def down(self) -> bool:
        """The daemon is gone: every call fails as unreachable (see the module docstring)."""
        return self._down

    @down.setter
    def down(self, down: bool) -> None:
        self._down = down
        if down:
            for queue, _ in self._watchers:
                queue.put_nowait(None)  # the stream breaks
        elif self._up is not None:
            self._up.set()
            self._up = None

    async def wait_up(self, _delay_s: float = 0) -> None:
        """Return once the daemon answers again (at once when it does): a reconnect's wait."""
        await asyncio.sleep(0)
        if self._down:
            if self._up is None:
                self._up = asyncio.Event()
            await self._up.wait()

    # --- scripting faults ----------------------------------------------------------------------

    def fail(self, method: str, status: int, message: str = "refused") -> None:
        self._faults.setdefault(method, []).append(_Fault(status, message))

    def time_out(self, method: str, *, after: bool) -> None:
        fault = _Fault(TIMED_OUT, "Docker did not answer in time", after=after)
        self._faults.setdefault(method, []).append(fault)

    def slow(self, method: str, seconds: float) -> None:
        self._faults.setdefault(method, []).append(_Fault(delay_s=seconds))

    def hold(self, method: str, *, late: bool = False) -> asyncio.Event:
        gate = asyncio.Event()
        self._faults.setdefault(method, []).append(_Fault(gate=gate, late=late))
        return gate

    def by_name(self, name: str) -> FakeContainer | None:
        return next((c for c in self.containers.values() if c.name == name), None)

    def lose(self, container_id: str) -> None:
        """The container disappears without a ``destroy`` event (missed while disconnected)."""
        self.containers.pop(container_id, None)

    def kill(self, container_id: str) -> None:
        """The container stops (it crashed, or was killed): it stays, and ``die`` goes out."""
        container = self.containers.get(container_id)
        if container is not None and container.state == "running":
            container.state = "exited"
            self._emit(ContainerEvent(container_id, "die"), container.labels)

    def destroy(self, container_id: str) -> None:
        """Someone else removed the container: it is gone, and a ``destroy`` event goes out."""
        container = self.containers.pop(container_id, None)
        if container is not None:
            self._emit(ContainerEvent(container_id, "destroy"), container.labels)

    # --- DockerEngines -------------------------------------------------------------------------

    async def ping(self) -> str:
        await self._before("ping")
        return "fake"

    async def list(self, filters: dict[str, list[str]]) -> list[ContainerRecord]:
        fault = await self._before("list")
        wanted = _labels(filters)
        listed = [
            c.record()
            for c in self.containers.values()
            if all(c.labels.get(k) == v for k, v in wanted.items())
        ]
        await self._after(fault)
        return listed

    async def ensure_image(self, image: str) -> None:
        fault = await self._before("ensure_image")
        if image not in self.images:
            if not self.pullable:
                raise FleetError(404, f"pull access denied for {image}")
            self.images.add(image)
        await self._after(fault)

    async def run(self, name: str, body: dict[str, Any]) -> ContainerRecord:
        fault = await self._before("run")
        if self.by_name(name) is not None:
            raise FleetError(409, f'Conflict. The container name "/{name}" is already in use')
        container = FakeContainer(
            f"id{next(self._ids)}" if self._daemon == 1 else f"d{self._daemon}-id{next(self._ids)}",
            name,
            dict(body.get("Labels", {})),
        )
        container.body = body
        self.containers[container.id] = container
        await self._after(fault)
        return container.record()

    async def find(self, name: str) -> ContainerRecord | None:
        info = await self.inspect(name)
        return None if info is None else self.containers[str(info["Id"])].record()

    async def inspect(self, name: str) -> dict[str, Any] | None:
        fault = await self._before("inspect")
        found = self.by_name(name) or self.containers.get(name)
        await self._after(fault)
        return None if found is None else {"Id": found.id, "Name": "/" + found.name}

    async def remove(self, container_id: str) -> None:
        fault = await self._before("remove")
        if container_id in self.containers and self.containers[container_id].state == "running":
            # A forced removal kills first: Docker's ``die`` goes out before its answer does.
            self.kill(container_id)
            await asyncio.sleep(0)
        self.destroy(container_id)
        await self._after(fault)

    @asynccontextmanager
    async def watch(self, filters: Filters) -> AsyncIterator[AsyncIterator[ContainerEvent]]:
        await self._before("watch")
        queue: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()
        watcher = (queue, _labels(filters))
        self._watchers.append(watcher)
        try:
            yield _drain(queue)
        finally:
            self._watchers.remove(watcher)

    # --- internals -----------------------------------------------------------------------------

    async def _before(self, method: str) -> _Fault | None:
        self.calls.append(method)
        for observer in self.observers:
            observer(method)
        if self.down:
            raise FleetError(UNREACHABLE, "cannot connect to the Docker API (fake daemon down)")
        queued = self._faults.get(method)
        fault = queued.pop(0) if queued else None
        if fault is None:
            return None
        if not fault.late:
            await _wait(fault)
        if fault.status and not fault.after:
            raise FleetError(fault.status, fault.message)
        return fault

    @staticmethod
    async def _after(fault: _Fault | None) -> None:
        if fault is None:
            return
        if fault.late:
            await _wait(fault)
        if fault.after:
            raise FleetError(fault.status, fault.message)

    def _emit(self, event: ContainerEvent, labels: dict[str, str]) -> None:
        if self._down:
            return  # nobody hears of it: the daemon's streams are broken
        for queue, wanted in self._watchers:
            if all(labels.get(k) == v for k, v in wanted.items()):
                queue.put_nowait(event)


def _labels(filters: Filters) -> dict[str, str]:
    """The labels (and values) that Docker filters ask for."""
    return dict(item.split("=", 1) for item in filters.get("label", []))


async def _wait(fault: _Fault) -> None:
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.gate is not None:
        await fault.gate.wait()


async def _drain(queue: asyncio.Queue[ContainerEvent | None]) -> AsyncIterator[ContainerEvent]:
    while True:
        event = await queue.get()
        if event is None:
            raise FleetError(UNREACHABLE, "the Docker event stream broke (fake daemon down)")
        yield event
