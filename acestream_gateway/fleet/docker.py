"""The fleet's only contact with Docker: list, create, start and remove engine containers (or, on
a Swarm, engine services, their tasks and nodes), and follow their events.

One ``aiodocker.Docker`` client serves the process (its owner, the app, closes it). Every call runs
under ``asyncio.timeout`` and every Docker failure becomes a :class:`FleetError` carrying Docker's
status, so nothing above this module imports aiodocker. The event stream is the one call without a
total timeout: it lasts as long as the connection, and a dropped connection ends it with a
:class:`FleetError` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from ..docker_endpoints import TlsFiles
from .specs import ContainerRecord
from .swarm_nodes import NodeRecord, SwarmEvent, node_record, parse_swarm_event
from .swarm_specs import ServiceRecord, TaskRecord, service_record, task_record

T = TypeVar("T")
E = TypeVar("E")
Filters = dict[str, list[str]]  # Docker's filters: {"label": ["k=v", ...], "event": [...]}

UNREACHABLE = 900  # aiodocker's status for "cannot reach the daemon"
TIMED_OUT = 408


class FleetError(Exception):
    """A Docker call failed; ``status`` is Docker's HTTP status (404, 409, ...), 900 when the
    daemon could not be reached, 408 when the call timed out."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (status {status})")
        self.status = status
        self.message = message

    @property
    def unreachable(self) -> bool:
        """Whether Docker itself could not be reached (as opposed to refusing the call)."""
        return self.status in (UNREACHABLE, TIMED_OUT)


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One container event of Docker's stream: ``die``, ``oom``, ``destroy``, ``health_status``...

    ``health`` is the new health status of a ``health_status`` event (``healthy``, ``unhealthy``,
    ``starting``), None for other events.
    """

    container_id: str
    action: str
    health: str | None = None
    name: str = ""


_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # where Docker puts its socket
_TCP = re.compile(r"^tcp://")


@asynccontextmanager
async def docker_client(
    url: str | None = None, timeout_s: float = 30.0, tls: TlsFiles | None = None
) -> AsyncIterator[DockerEngines]:
    """A Docker client for the process's lifetime: ``url``, else DOCKER_HOST, else the local
    daemon's socket (or Docker context) the client finds. ``tls``: a ``tcp://`` endpoint spoken
    to over TLS, the daemon's certificate verified against the CA, the gateway's client
    certificate presented.

    With none found (no socket yet: Docker not started, or its socket not mounted), the client
    points at Docker's default socket: its calls fail as unreachable, the fleet reports
    ``docker_unavailable`` and retries with backoff, and it works once the socket appears. A
    DOCKER_HOST the client cannot use at all, or TLS files that cannot be loaded, raise
    :class:`FleetError` (status 400)."""
    host = url or os.environ.get("DOCKER_HOST", "").strip() or None
    try:
        if tls is not None and host is not None:
            client = aiodocker.Docker(url=_TCP.sub("https://", host), ssl_context=tls_context(tls))
        else:
            client = aiodocker.Docker(url=host)
    except ssl.SSLError as exc:
        raise FleetError(400, f"the TLS files of {host} cannot be used: {exc}") from None
    except (ValueError, OSError, AssertionError) as exc:  # aiodocker asserts it found a host
        if host is not None:
            raise FleetError(400, f"DOCKER_HOST ({host!r}) cannot be used: {exc}") from None
        client = aiodocker.Docker(url=_DEFAULT_DOCKER_HOST)
    try:
        yield DockerEngines(client, timeout_s)
    finally:
        await client.close()


def tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """Verification always on: the daemon's certificate against ``tls.ca`` (its name checked),
    and the gateway's own certificate and key for the daemon to check."""
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


class DockerEngines:
    """Engine containers through one Docker client, each call bounded by ``timeout_s``."""

    def __init__(self, client: aiodocker.Docker, timeout_s: float = 30.0) -> None:
        self._client = client
        self.timeout_s = timeout_s

    async def ping(self) -> str:
        """The daemon's version; raises :class:`FleetError` when it does not answer."""
        info = await self._call(self._client.version())
        return str(info.get("Version", "unknown"))

    async def list(self, filters: dict[str, list[str]]) -> list[ContainerRecord]:
        """Containers matching ``filters``, stopped ones included."""
        containers = await self._call(
            self._client.containers.list(all="true", filters=json.dumps(filters))
        )
        return [_record(c._container) for c in containers]

    async def ensure_image(self, image: str) -> None:
        """Pull ``image`` unless it is already present."""
        try:
            await self._call(self._client.images.inspect(image))
        except FleetError as exc:
            if exc.status != 404:
                raise
            await self._call(self._client.images.pull(image), self.timeout_s * 10)

    async def run(self, name: str, body: dict[str, Any]) -> ContainerRecord:
        """Create and start a container; a half-made one is removed again."""
        container = await self._call(self._client.containers.create(body, name=name))
        try:
            await self._call(container.start())
            info = await self._call(container.show())
        except BaseException:
            await asyncio.shield(self._remove_quietly(container.id))
            raise
        return _record(info)

    async def find(self, name: str) -> ContainerRecord | None:
        """The container called ``name`` (any state), or None when there is none."""
        info = await self.inspect(name)
        return None if info is None else _record(info)

    async def inspect(self, name: str) -> dict[str, Any] | None:
        """Docker's inspect answer for the container ``name`` (or id), None when there is none."""
        try:
            info = await self._call(self._client.containers.container(name).show())
        except FleetError as exc:
            if exc.status != 404:
                raise
            return None
        return dict(info)

    async def remove(self, container_id: str) -> None:
        """Remove a container, running or not; one already gone counts as removed."""
        try:
            await self._call(self._client.containers.container(container_id).delete(force=True))
        except FleetError as exc:
            if exc.status != 404:
                raise

    async def services(self, filters: Filters) -> tuple[ServiceRecord, ...]:
        """Swarm services matching ``filters`` (the daemon must be a Swarm manager)."""
        found = await self._call(self._client.services.list(filters=filters))
        return tuple(service_record(info) for info in found)

    async def create_service(self, spec: dict[str, Any]) -> str:
        """Create a Swarm service from its full ``POST /services/create`` body; its id."""
        answer = await self._call(
            self._client._query_json("services/create", "POST", data=json.dumps(spec))
        )
        return str(answer["ID"])

    async def remove_service(self, service_id: str) -> None:
        """Remove a Swarm service (its tasks stop); one already gone counts as removed."""
        try:
            await self._call(self._client.services.delete(service_id))
        except FleetError as exc:
            if exc.status != 404:
                raise

    async def tasks(self, filters: Filters) -> tuple[TaskRecord, ...]:
        """Swarm tasks matching ``filters``, stopped ones included."""
        found = await self._call(self._client.tasks.list(filters=filters))
        return tuple(task_record(info) for info in found)

    async def nodes(self) -> tuple[NodeRecord, ...]:
        """The Swarm's nodes: address, role, availability, state."""
        return tuple(node_record(info) for info in await self._call(self._client.nodes.list()))

    @asynccontextmanager
    async def watch(self, filters: Filters) -> AsyncIterator[AsyncIterator[ContainerEvent]]:
        """Follow Docker's event stream for ``filters``; events come from the moment this enters.

        Entering connects (bounded by ``timeout_s``) or raises :class:`FleetError`; once entered,
        Docker is subscribed, so a caller that lists containers now misses nothing. The iterator
        never ends by itself: a dropped connection raises :class:`FleetError` (status 900).
        """
        async with self._events(filters, parse_event) as events:
            yield events

    @asynccontextmanager
    async def watch_swarm(self, filters: Filters) -> AsyncIterator[AsyncIterator[SwarmEvent]]:
        """Follow a Swarm manager's service and node events for ``filters``, as :meth:`watch`."""
        async with self._events(filters, parse_swarm_event) as events:
            yield events

    @asynccontextmanager
    async def _events(
        self, filters: Filters, parse: Callable[[bytes], E | None]
    ) -> AsyncIterator[AsyncIterator[E]]:
        # aiodocker's own ``docker.events`` runs its reader in a task nobody owns and does not
        # tell when the subscription is live, which list-then-watch needs: query the endpoint.
        response = await self._call(
            self._client._do_query(
                "events", "GET", params={"filters": json.dumps(filters)}, timeout=_NO_TIMEOUT
            )
        )
        try:
            yield _EventStream(response, parse)
        finally:
            response.close()  # an endless body: close, never read it to its end

    async def _remove_quietly(self, container_id: str) -> None:
        # Should this fail, the reconciler removes the leftover it finds by its labels.
        with contextlib.suppress(FleetError):
            await self.remove(container_id)

    async def _call(self, call: Awaitable[T], timeout_s: float | None = None) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                return await call
        except DockerError as exc:
            raise FleetError(exc.status, str(exc.message)) from None
        except TimeoutError:
            raise FleetError(408, "Docker did not answer in time") from None
        except OSError as exc:
            raise FleetError(UNREACHABLE, f"cannot reach Docker: {exc}") from None


_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)  # the connect is under _call's


class _EventStream(Generic[E]):
    """The lines of one ``/events`` response as records (those ``parse`` makes one of)."""

    def __init__(
        self, response: aiohttp.ClientResponse, parse: Callable[[bytes], E | None]
    ) -> None:
        self._response = response
        self._parse = parse

    def __aiter__(self) -> _EventStream[E]:
        return self

    async def __anext__(self) -> E:
        while True:
            try:
                line = await self._response.content.readline()
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise FleetError(UNREACHABLE, f"the Docker event stream broke: {exc!r}") from None
            if not line:
                raise FleetError(UNREACHABLE, "the Docker event stream ended")
            event = self._parse(line)
            if event is not None:
                return event


def parse_event(line: bytes) -> ContainerEvent | None:
    """One line of Docker's event stream as a record; None for anything but a container event."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("Type", "container") != "container":
        return None
    actor = _mapping(data.get("Actor"))
    container_id = actor.get("ID") or data.get("id")
    action = data.get("Action") or data.get("status")
    if not isinstance(container_id, str) or not isinstance(action, str) or not container_id:
        return None
    # Docker spells a health change "health_status: unhealthy" in one field.
    verb, _, detail = action.partition(":")
    health = (detail.strip() or None) if verb == "health_status" else None
    name = str(_mapping(actor.get("Attributes")).get("name", ""))
    return ContainerEvent(container_id, verb.strip(), health, name)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _record(info: dict[str, Any]) -> ContainerRecord:
    """Docker's list and inspect answers differ in shape; both become one record."""
    state = info.get("State", "")
    if isinstance(state, dict):  # inspect: {"Status": "running", ...}
        state = state.get("Status", "")
    labels = info.get("Labels") or info.get("Config", {}).get("Labels") or {}
    name = info.get("Name") or (info.get("Names") or [""])[0]
    created = info.get("Created", 0)
    return ContainerRecord(
        id=str(info["Id"]),
        name=str(name).lstrip("/"),
        state=str(state),
        labels=dict(labels),
        created=float(created) if isinstance(created, int | float) else 0.0,
    )
