"""Ending engine sessions for good, and only then giving their engine slot back.

A claim is released only once its session is known to be gone: the engine confirmed the stop (or
no longer knows the session), or the engine itself is lost (unhealthy or removed, so its sessions
go with its container). A session whose start answer timed out is found again by its pid and
stopped; while that happens the claim is held, so no other session of the same content can be
put on that engine and be superseded by the late one. Every retirement runs as a task of the
retirer's own supervisor, so a channel never waits for a hung engine, and the registry waits for
them (bounded) when it closes. No engine session ever outlives its channel unaccounted.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from ..engines.client import EngineClient, EngineError, EngineRefused, EngineSession
from ..engines.model import ContentRef
from ..engines.pool import Claim, EnginePool
from ..logs import get_logger
from ..tasks import Backoff, Supervisor

log = get_logger(__name__)

_STOP_ATTEMPTS = 4


class Retirer:
    """Stops sessions and releases their claims, in the background; see the module docstring."""

    def __init__(self, *, pool: EnginePool, client: EngineClient, abandon_s: float) -> None:
        self._pool = pool
        self._client = client
        self._abandon_s = abandon_s
        self._tasks = Supervisor("retirer")
        self._by_content: dict[str, set[asyncio.Task[None]]] = {}

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def retire(
        self,
        claim: Claim,
        content: ContentRef,
        session: EngineSession | None,
        pid: str | None = None,
    ) -> None:
        """End ``session`` (or the session ``pid`` may have started), then release ``claim``."""
        if session is None and pid is None:
            claim.release()
            return
        task = self._tasks.spawn(
            self._retire(claim, content, session, pid),
            name=f"retire {claim.content_key} on {claim.engine.name}",
        )
        key = claim.content_key
        self._by_content.setdefault(key, set()).add(task)
        task.add_done_callback(lambda done: self._retired(key, done))

    def _retired(self, content_key: str, task: asyncio.Task[None]) -> None:
        tasks = self._by_content.get(content_key)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._by_content[content_key]

    async def settled(self, content_key: str) -> None:
        """Return once every session of ``content_key`` handed over so far has ended (stopped, or
        given up on after its bound): what moves on from a content's failed session waits for
        it, so it never holds two sessions at once."""
        tasks = self._by_content.get(content_key)
        if tasks:
            await asyncio.wait(set(tasks))

    async def close(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for retirements under way, then cancel what is left (their
        claims are released all the same)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._tasks.wait()
        await self._tasks.close()

    async def _retire(
        self,
        claim: Claim,
        content: ContentRef,
        session: EngineSession | None,
        pid: str | None,
    ) -> None:
        structlog.contextvars.bind_contextvars(content=claim.content_key, engine=claim.engine.name)
        try:
            if session is None and pid is not None:
                session = await self._find(claim, content, pid)
            if session is not None:
                await self._stop(claim, session)
        finally:
            self._client.forget_session(session.pid if session is not None else pid or "")
            claim.release()

    async def _find(self, claim: Claim, content: ContentRef, pid: str) -> EngineSession | None:
        """The session a timed-out start may have made: asking again with the same pid returns it
        (and cannot supersede another session of this content: the held claim keeps any other
        off this engine)."""
        try:
            return await self._client.start_session(
                claim.engine.address, content, pid, timeout_s=self._abandon_s
            )
        except EngineRefused:
            return None  # the engine made no session of it
        except EngineError as exc:
            if not claim.lost.is_set():
                log.warning("engine_session_may_linger", pid=pid, reason=exc.reason)
                self._pool.note_failure(claim.engine.id, exc.reason)
            return None

    async def _stop(self, claim: Claim, session: EngineSession) -> None:
        """Stop the session while its engine exists; an engine already lost (unhealthy, being
        replaced) gets one try, since its sessions end with its container anyway."""
        backoff = Backoff(first_s=0.5, cap_s=5.0)
        for attempt in range(1, _STOP_ATTEMPTS + 1):
            if self._pool.get(claim.engine.id) is None:
                log.info("engine_session_gone_with_engine", pid=session.pid)
                return
            try:
                await self._client.stop_session(session)
            except EngineError as exc:
                log.warning(
                    "engine_session_stop_failed",
                    pid=session.pid,
                    attempt=attempt,
                    reason=exc.reason,
                    detail=exc.detail,
                )
                if claim.lost.is_set():
                    log.info("engine_session_ends_with_engine", pid=session.pid)
                    return
                self._pool.note_failure(claim.engine.id, exc.reason)
                await _wait_or_timeout(claim.lost, backoff.next())
                continue
            log.info("engine_session_stopped", pid=session.pid, engine=claim.engine.name)
            return
        # The engine keeps failing: it counts as unhealthy by now and is being replaced, which
        # ends the session with its container.
        log.warning("engine_session_may_linger", pid=session.pid, engine=claim.engine.name)


async def _wait_or_timeout(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
