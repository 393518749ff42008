"""One channel: a claim on an engine, one engine session, one reader of its stream, a broadcast.

The channel's upstream task is the only reader of the engine's playback URL (the engine serves it
to one reader only). Whatever ends it, the engine session is stopped and the claim released in
``finally``, so no session or slot is leaked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import structlog

from ..engines.client import EngineClient, EngineError, EngineSession, EngineTimeout, new_pid
from ..engines.model import ContentRef
from ..engines.pool import Claim, EnginePool, NoCapacity
from ..logs import get_logger
from .broadcast import Broadcast
from .mpegts import NULL_PACKET, JoinPoints, TsAligner

log = get_logger(__name__)

_READ_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each phase of an upstream may take (seconds)."""

    first_data_s: float
    stall_s: float
    keepalive_s: float
    abandon_s: float = 30.0  # finding a session whose start answer timed out, to stop it


class UpstreamFailed(Exception):
    """The channel could not start; ``status`` is the HTTP status a player should see."""

    def __init__(
        self,
        reason: str,
        status: int,
        retry_after_s: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
        self.code = code


class Channel:
    """A content's shared upstream; created and owned by the registry."""

    def __init__(
        self,
        content: ContentRef,
        *,
        pool: EnginePool,
        client: EngineClient,
        timeouts: Timeouts,
        window_bytes: int,
    ) -> None:
        self.content = content
        self.broadcast = Broadcast(window_bytes)
        self.started_at = time.time()
        self.session: EngineSession | None = None
        self.claim: Claim | None = None
        self.players = 0
        self._pool = pool
        self._client = client
        self._timeouts = timeouts
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait_started(self) -> None:
        """Return once the engine session exists; raise :class:`UpstreamFailed` if it never will."""
        await asyncio.shield(self._started)

    async def run(self) -> None:
        """The upstream task: claim, start, read until the end, then always clean up."""
        # The registry starts this task in a fresh context, not the first player's request.
        structlog.contextvars.bind_contextvars(content=self.content.key)
        keepalive = asyncio.create_task(self._keepalive(), name=f"keepalive {self.content.key}")
        try:
            await self._run()
        except UpstreamFailed as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(UpstreamFailed("channel closed", 503))
            raise
        finally:
            self.broadcast.close("upstream ended")  # no-op when it already ended
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)

    async def _run(self) -> None:
        try:
            claim = await self._pool.claim(self.content.key)
        except NoCapacity as exc:
            code = exc.code.value if exc.code else None
            raise UpstreamFailed(exc.reason, 503, exc.retry_after_s, code) from None
        self.claim = claim
        structlog.contextvars.bind_contextvars(engine=claim.engine.name)
        try:
            session = await self._start_session(claim)
            try:
                await self._play(session, claim)
            finally:
                await self._stop_session(session)
        finally:
            claim.release()

    async def _start_session(self, claim: Claim) -> EngineSession:
        pid = new_pid()
        try:
            session = await self._client.start_session(claim.engine.address, self.content, pid)
        except EngineError as exc:
            log.warning("engine_session_refused", reason=exc.reason)
            failure = UpstreamFailed(exc.reason, 502)
            self._fail(failure)  # players hear it now, before any clean-up below
            if isinstance(exc, EngineTimeout):
                await self._abandon(claim, pid)
            raise failure from None
        self.session = session
        log.info("engine_session_started", infohash=session.infohash, pid=session.pid)
        if not self._started.done():
            self._started.set_result(None)
        return session

    async def _play(self, session: EngineSession, claim: Claim) -> None:
        try:
            async with asyncio.timeout(self._timeouts.first_data_s):
                response = await self._client.open_stream(session)
        except TimeoutError:
            log.warning("upstream_no_data", timeout_s=self._timeouts.first_data_s)
            self.broadcast.close(f"engine sent no data in {self._timeouts.first_data_s:g} s")
            return
        except EngineError as exc:
            log.warning("upstream_open_failed", reason=exc.reason)
            self.broadcast.close(exc.reason)
            return
        claim.activate()
        try:
            reason = await self._pump(response)
        finally:
            response.close()  # a live stream's connection is never reused
        self.broadcast.close(reason)

    async def _pump(self, response: aiohttp.ClientResponse) -> str | None:
        """Copy the engine's stream into the broadcast; the reason it ended (None: clean EOF)."""
        aligner = TsAligner()
        joins = JoinPoints()
        timeout = self._timeouts.first_data_s
        first = True
        while True:
            try:
                async with asyncio.timeout(timeout):
                    data = await response.content.read(_READ_SIZE)
            except TimeoutError:
                log.warning("upstream_stalled", timeout_s=timeout)
                return f"engine stalled for {timeout:g} s"
            except aiohttp.ClientError as exc:
                log.warning("upstream_broken", error=repr(exc))
                return "engine stream broke"
            if not data:
                log.info("upstream_ended", bytes=self.broadcast.bytes_published)
                return None
            if first:
                log.info("upstream_first_data")
                first, timeout = False, self._timeouts.stall_s
            self._publish(aligner.feed(data), joins)

    def _publish(self, data: bytes, joins: JoinPoints) -> None:
        """Publish whole packets, cut so that the last join point starts a chunk of its own."""
        cut = joins.last(data)
        if cut is None:
            self.broadcast.publish(data)
            return
        if cut:
            self.broadcast.publish(data[:cut])
        self.broadcast.publish(data[cut:], join_point=True)

    async def _abandon(self, claim: Claim, pid: str) -> None:
        """The engine may have started the session after its answer timed out: find it again by
        its pid and stop it, so it does not linger on the engine (the claim is held meanwhile)."""
        try:
            late = await self._client.start_session(
                claim.engine.address, self.content, pid, timeout_s=self._timeouts.abandon_s
            )
            await self._client.stop_session(late)
        except EngineError as exc:
            log.warning("engine_session_may_linger", pid=pid, reason=exc.reason)
        else:
            log.info("engine_session_abandoned", pid=pid)

    async def _keepalive(self) -> None:
        """A TS null packet for every player whenever the engine has been quiet for a while
        (prebuffering, a stall), so players with read timeouts keep waiting. One timer per
        channel, not per player."""
        interval = self._timeouts.keepalive_s
        while not self.broadcast.closed:
            await asyncio.sleep(interval)
            if self.broadcast.quiet_for() >= interval:
                self.broadcast.publish(NULL_PACKET)

    async def _stop_session(self, session: EngineSession) -> None:
        try:
            await self._client.stop_session(session)
        except EngineError as exc:
            log.warning("engine_session_stop_failed", reason=exc.reason)
        else:
            log.info("engine_session_stopped")

    def _fail(self, exc: UpstreamFailed) -> None:
        if not self._started.done():
            self._started.set_exception(exc)
            self._started.exception()  # retrieved here: players may all have gone already
        self.broadcast.close(exc.reason)
