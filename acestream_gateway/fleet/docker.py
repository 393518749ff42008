"""The fleet's only contact with Docker: list, create, start and remove engine containers.

One ``aiodocker.Docker`` client serves the process (its owner, the app, closes it). Every call runs
under ``asyncio.timeout`` and every Docker failure becomes a :class:`FleetError` carrying Docker's
status, so nothing above this module imports aiodocker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiodocker
from aiodocker.exceptions import DockerError

from .specs import ContainerRecord

T = TypeVar("T")

UNREACHABLE = 900  # aiodocker's status for "cannot reach the daemon"


class FleetError(Exception):
    """A Docker call failed; ``status`` is Docker's HTTP status (404, 409, ...), 900 when the
    daemon could not be reached, 408 when the call timed out."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (status {status})")
        self.status = status
        self.message = message


@asynccontextmanager
async def docker_client(
    url: str | None = None, timeout_s: float = 30.0
) -> AsyncIterator[DockerEngines]:
    """A Docker client for the process's lifetime (DOCKER_HOST or the local socket)."""
    try:
        client = aiodocker.Docker(url=url)
    except (ValueError, OSError) as exc:
        raise FleetError(UNREACHABLE, f"cannot set up a Docker client: {exc}") from None
    try:
        yield DockerEngines(client, timeout_s)
    finally:
        await client.close()


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
        try:
            info = await self._call(self._client.containers.container(name).show())
        except FleetError as exc:
            if exc.status != 404:
                raise
            return None
        return _record(info)

    async def remove(self, container_id: str) -> None:
        """Remove a container, running or not; one already gone counts as removed."""
        try:
            await self._call(self._client.containers.container(container_id).delete(force=True))
        except FleetError as exc:
            if exc.status != 404:
                raise

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
