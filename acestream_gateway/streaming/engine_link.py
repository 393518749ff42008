"""A channel's dealings with the engines: claiming a slot, starting a session on it, stopping
one. Each outcome is a value (or :class:`~.errors.NoEngine`) the channel decides on; failures of
a start are counted against the engine's health here, as they happen."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.client import (
    EngineClient,
    EngineError,
    EngineRefused,
    EngineSession,
    EngineTimeout,
    new_pid,
)
from ..engines.model import ContentRef, EngineState
from ..engines.pool import Claim, EnginePool, NoCapacity
from ..logs import get_logger
from ..metrics import Metrics
from .errors import ChannelError, EngineFailed, EngineRefusedChannel, NoEngine

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Started:
    """What one session start gave: a session, or a pid to find again, and on a first start the
    error that ends the channel: at once (``error``, the content was refused) or when no other
    engine can take it (``failure``, the engine failed)."""

    session: EngineSession | None = None
    find_pid: str | None = None
    error: ChannelError | None = None
    failure: EngineFailed | None = None
    reason: str = "the engine could not start it"


class EngineLink:
    """Claims, starts and stops for one content's channel."""

    def __init__(
        self, content: ContentRef, *, pool: EnginePool, client: EngineClient, metrics: Metrics
    ) -> None:
        self._content = content
        self._pool = pool
        self._client = client
        self._metrics = metrics

    async def claim(self, exclude: set[str] | tuple[()], *, patient: bool = True) -> Claim:
        """A slot on an engine not in ``exclude``; :class:`NoEngine` when none can be had."""
        # A failover (players are attached) waits out a provisioning block, such as a VPN that
        # is reconnecting, and a full fleet's making room, for up to PROVISION_WAIT_S; a first
        # start is refused at once, like a new channel.
        try:
            claim = await self._pool.claim(
                self._content.key, exclude=exclude, wait_for_provisioning=patient
            )
        except NoCapacity as exc:
            code = exc.code.value if exc.code else None
            raise NoEngine(exc.reason, exc.retry_after_s, code) from None
        return claim

    async def start(self, claim: Claim, *, first: bool) -> Started:
        """Start a session on the claimed engine (never raises: the caller decides).

        The first start of a channel has players waiting for an answer: a refusal of the content
        then carries the error that ends the channel at once, and a failure of the engine the
        one to end it with when no other engine can take the channel.
        """
        pid = new_pid()
        try:
            session = await self._client.start_session(claim.engine.address, self._content, pid)
        except EngineRefused as exc:
            log.warning("engine_session_refused", reason=exc.reason)
            self._metrics.session_failures.labels(reason="refused").inc()
            return Started(error=EngineRefusedChannel(exc.reason) if first else None)
        except EngineError as exc:
            log.warning("engine_session_failed", reason=exc.reason, detail=exc.detail)
            self._metrics.session_failures.labels(reason="engine_error").inc()
            self._pool.note_failure(claim.engine.id, exc.reason)
            return Started(
                find_pid=pid if isinstance(exc, EngineTimeout) else None,
                failure=EngineFailed(exc.reason) if first else None,
                reason=exc.reason,
            )
        self._pool.note_success(claim.engine.id)
        self._metrics.session_starts.inc()
        log.info("engine_session_started", infohash=session.infohash, pid=session.pid)
        return Started(session=session)

    async def stop_quietly(self, session: EngineSession) -> None:
        """Stop ``session``; a failure is only logged (the engine supersedes it anyway)."""
        try:
            await self._client.stop_session(session)
        except EngineError as exc:
            log.info("engine_session_stop_failed", reason=exc.reason, detail=exc.detail)

    def usable(self, claim: Claim) -> bool:
        """Whether the claimed engine is still ready and the claim not told to move."""
        engine = self._pool.get(claim.engine.id)
        return engine is not None and engine.state is EngineState.READY and not claim.lost.is_set()
