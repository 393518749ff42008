"""Reading one engine session's stream into a channel's broadcast, and how that reading ended.

This is the only reader of a session's playback URL (the engine serves it to one reader only).
Bytes are published as whole TS packets, gathered into blocks (:mod:`.coalesce`: an engine's small
pieces cost one write per player per block, not per piece) that say where their latest join point
is; after a failover the first bytes published start at a splice point
(program tables, then a keyframe), so players already watching resynchronise at once. Reading
never decides what happens next: it returns a :class:`SessionEnd` and the channel decides (fail
over, or end).
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from ..engines.client import EngineClient, EngineError, EngineSession
from ..logs import get_logger
from .broadcast import Broadcast
from .coalesce import Block, Coalescer
from .mpegts import JoinPoints, Splicer, TsAligner
from .source import open_source

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each phase of an upstream may take (seconds)."""

    first_data_s: float
    stall_s: float
    keepalive_s: float
    abandon_s: float = 30.0  # finding a session whose start answer timed out, to stop it


@dataclass(slots=True)
class Meter:
    """What a channel's sessions have read from engines, over all of them."""

    bytes_in: int = 0
    sessions: int = 0
    splices: list[int] = field(default_factory=list)  # broadcast offsets of the latest splices

    def spliced_at(self, offset: int) -> None:
        self.splices = [*self.splices[-15:], offset]


class EndKind(enum.Enum):
    """Why reading a session stopped."""

    EOF = "eof"  # the engine ended the stream
    BROKEN = "broken"  # the connection broke
    STALLED = "stalled"  # no bytes for the stall timeout during playback
    NO_DATA = "no_data"  # no bytes within the first-data timeout (headers held back forever)
    OPEN_FAILED = "open_failed"  # the playback URL could not be opened
    ENGINE_LOST = "engine_lost"  # the engine turned unhealthy or disappeared


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """How reading one session ended; ``detail`` is for logs, ``reason`` for players."""

    kind: EndKind
    reason: str
    detail: str = ""
    bytes: int = 0
    streamed_s: float = 0.0  # from the first byte to the end

    @property
    def engine_fault(self) -> bool:
        """Whether the engine itself, rather than the broadcast, looks broken."""
        return self.kind in (EndKind.OPEN_FAILED, EndKind.ENGINE_LOST)


async def read_session(
    client: EngineClient,
    session: EngineSession,
    broadcast: Broadcast,
    timeouts: Timeouts,
    *,
    splice: bool,
    on_open: Callable[[], None],
    meter: Meter,
) -> SessionEnd:
    """Open the session's stream and copy it into ``broadcast`` until it ends."""
    try:
        async with asyncio.timeout(timeouts.first_data_s):
            response = await client.open_stream(session)
    except TimeoutError:
        log.warning("upstream_no_data", timeout_s=timeouts.first_data_s)
        return SessionEnd(EndKind.NO_DATA, f"engine sent no data in {timeouts.first_data_s:g} s")
    except EngineError as exc:
        log.warning("upstream_open_failed", reason=exc.reason, detail=exc.detail)
        return SessionEnd(EndKind.OPEN_FAILED, exc.reason, exc.detail)
    on_open()
    meter.sessions += 1
    try:
        return await _pump(response, broadcast, timeouts, Splicer() if splice else None, meter)
    finally:
        response.close()  # a live stream's connection is never reused


async def _pump(
    response: aiohttp.ClientResponse,
    broadcast: Broadcast,
    timeouts: Timeouts,
    splicer: Splicer | None,
    meter: Meter,
) -> SessionEnd:
    gather = _Gatherer(broadcast, session=meter.sessions)
    try:
        return await _copy(response, gather, timeouts, splicer, meter)
    finally:
        gather.close()  # what this session sent reaches the players before anything else


@dataclass(slots=True)
class _Progress:
    """How far reading one session got (loop clock for the last data, wall clock for logs)."""

    received: int = 0
    first_at: float | None = None  # time.monotonic() of the first byte
    last_at: float = 0.0  # loop.time() of the latest bytes, or of the start


async def _copy(
    response: aiohttp.ClientResponse,
    gather: _Gatherer,
    timeouts: Timeouts,
    splicer: Splicer | None,
    meter: Meter,
) -> SessionEnd:
    """Read until the stream ends, breaks or goes quiet for its timeout.

    One timeout scope covers many reads (a timer per read would cost more than the read): when it
    expires, the stream is quiet only if no bytes came for the whole timeout, else a new scope
    starts from the latest bytes.
    """
    loop = asyncio.get_running_loop()
    progress = _Progress(last_at=loop.time())
    reader = _Reader(gather, splicer, meter, progress, timeouts.stall_s)
    source = open_source(response, reader.feed)
    while True:
        timeout = timeouts.first_data_s if progress.first_at is None else timeouts.stall_s
        try:
            async with asyncio.timeout_at(progress.last_at + timeout) as scope:
                reader.scope = scope
                error = await source.ended()
        except TimeoutError:
            if loop.time() - progress.last_at < timeout:
                continue
            log.warning("upstream_stalled", timeout_s=timeout, bytes=progress.received)
            kind = EndKind.STALLED if progress.first_at is not None else EndKind.NO_DATA
            return _end(kind, f"engine stalled for {timeout:g} s", "", progress)
        finally:
            reader.scope = None
        if error is not None:
            log.warning("upstream_broken", error=repr(error), bytes=progress.received)
            return _end(EndKind.BROKEN, "engine stream broke", repr(error), progress)
        log.info("upstream_ended", bytes=progress.received)
        return _end(EndKind.EOF, "engine ended the stream", "", progress)


class _Reader:
    """What one session's bytes go through: whole packets on to the gatherer, and the progress
    the stall timeout is judged by. Fed from the loop (see :mod:`.source`), so it never waits."""

    __slots__ = (
        "_aligner",
        "_context",
        "_gather",
        "_joins",
        "_loop",
        "_meter",
        "_progress",
        "_splicer",
        "_stall_s",
        "scope",
    )

    def __init__(
        self,
        gather: _Gatherer,
        splicer: Splicer | None,
        meter: Meter,
        progress: _Progress,
        stall_s: float,
    ) -> None:
        self._gather = gather
        self._splicer = splicer
        self._meter = meter
        self._progress = progress
        self._stall_s = stall_s
        self._aligner = TsAligner()
        self._joins = JoinPoints()
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()  # the channel's log context, for callbacks
        self.scope: asyncio.Timeout | None = None  # the timeout the reading task waits under

    def feed(self, data: bytes) -> None:
        progress = self._progress
        progress.received += len(data)
        progress.last_at = self._loop.time()
        self._meter.bytes_in += len(data)
        if progress.first_at is None:
            self._context.run(log.info, "upstream_first_data")
            progress.first_at = time.monotonic()
            if self.scope is not None:  # from now on, quiet means stalled
                self.scope.reschedule(progress.last_at + self._stall_s)
        self._take(self._aligner.feed(data))

    def _take(self, packets: bytes) -> None:
        splicer = self._splicer
        if splicer is not None and not splicer.done:
            packets = splicer.feed(packets)
            if not splicer.done:
                return
            self._context.run(log.info, "upstream_spliced", dropped=splicer.dropped)
            self._meter.spliced_at(self._gather.offset)
            self._gather.add(packets, join_at=0)
            return
        if packets:
            self._gather.add(packets, join_at=self._joins.last(packets))


class _Gatherer:
    """A session's blocks on their way into the broadcast: a :class:`Coalescer` and the one timer
    that sends what is pending when no further piece comes in time."""

    __slots__ = ("_broadcast", "_closed", "_coalescer", "_loop", "_session", "_timer")

    def __init__(self, broadcast: Broadcast, session: int) -> None:
        self._broadcast = broadcast
        self._session = session  # the channel's count of sessions: tells this one apart
        self._coalescer = Coalescer()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def offset(self) -> int:
        """Where the next byte added will be in the broadcast."""
        return self._broadcast.bytes_published + self._coalescer.pending_bytes

    def add(self, data: bytes, *, join_at: int | None) -> None:
        if self._closed:
            return  # the session is over: nothing of it may follow what it sent
        block = self._coalescer.add(data, self._loop.time(), join_at=join_at)
        if block is not None:
            self._cancel_timer()  # it was set for the bytes this block sends
        self._publish(block)
        self._arm()

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()
        self._publish(self._coalescer.flush())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        deadline = self._coalescer.deadline
        if deadline is not None and self._timer is None:
            self._timer = self._loop.call_at(deadline, self._on_deadline, deadline)

    def _on_deadline(self, deadline: float) -> None:
        self._timer = None
        # A timer may fire a hair before its time by the loop's clock (uvloop's is cached, in
        # milliseconds): what was due at ``deadline`` goes now, or the timer would spin until then.
        self._publish(self._coalescer.due(max(deadline, self._loop.time())))
        self._arm()

    def _publish(self, block: Block | None) -> None:
        if block is not None:
            self._broadcast.publish(block.data, join_at=block.join_at, session=self._session)


def _end(kind: EndKind, reason: str, detail: str, progress: _Progress) -> SessionEnd:
    first_at = progress.first_at
    streamed = 0.0 if first_at is None else time.monotonic() - first_at
    return SessionEnd(kind, reason, detail, progress.received, streamed)
