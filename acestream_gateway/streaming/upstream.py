"""Reading one engine session's stream into a channel's broadcast, and how that reading ended.

This is the only reader of a session's playback URL (the engine serves it to one reader only).
Bytes are published as whole TS packets, gathered into blocks (:mod:`.coalesce`: an engine's small
pieces cost one write per player per block, not per piece) and cut so that every join point
starts a block of its own; after a failover the first bytes published start at a splice point
(program tables, then a keyframe), so players already watching resynchronise at once. Reading
never decides what happens next: it returns a :class:`SessionEnd` and the channel decides (fail
over, or end).
"""

from __future__ import annotations

import asyncio
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

log = get_logger(__name__)

_READ_SIZE = 64 * 1024


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
    gather = _Gatherer(broadcast)
    try:
        return await _copy(response, gather, timeouts, splicer, meter)
    finally:
        gather.close()  # what this session sent reaches the players before anything else


async def _copy(
    response: aiohttp.ClientResponse,
    gather: _Gatherer,
    timeouts: Timeouts,
    splicer: Splicer | None,
    meter: Meter,
) -> SessionEnd:
    aligner = TsAligner()
    joins = JoinPoints()
    timeout = timeouts.first_data_s
    received = 0
    first_at: float | None = None
    while True:
        try:
            async with asyncio.timeout(timeout):
                data = await response.content.read(_READ_SIZE)
        except TimeoutError:
            log.warning("upstream_stalled", timeout_s=timeout, bytes=received)
            kind = EndKind.STALLED if first_at is not None else EndKind.NO_DATA
            return _end(kind, f"engine stalled for {timeout:g} s", "", received, first_at)
        except aiohttp.ClientError as exc:
            log.warning("upstream_broken", error=repr(exc), bytes=received)
            return _end(EndKind.BROKEN, "engine stream broke", repr(exc), received, first_at)
        if not data:
            log.info("upstream_ended", bytes=received)
            return _end(EndKind.EOF, "engine ended the stream", "", received, first_at)
        received += len(data)
        meter.bytes_in += len(data)
        if first_at is None:
            log.info("upstream_first_data")
            first_at, timeout = time.monotonic(), timeouts.stall_s
        packets = aligner.feed(data)
        if splicer is not None and not splicer.done:
            packets = splicer.feed(packets)
            if not splicer.done:
                continue
            log.info("upstream_spliced", dropped=splicer.dropped)
            meter.spliced_at(gather.offset)
            gather.add(packets, join_at=0)
            continue
        if packets:
            gather.add(packets, join_at=joins.last(packets))


class _Gatherer:
    """A session's blocks on their way into the broadcast: a :class:`Coalescer` and the one timer
    that sends what is pending when no further piece comes in time."""

    __slots__ = ("_broadcast", "_coalescer", "_loop", "_timer")

    def __init__(self, broadcast: Broadcast) -> None:
        self._broadcast = broadcast
        self._coalescer = Coalescer()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def offset(self) -> int:
        """Where the next byte added will be in the broadcast."""
        return self._broadcast.bytes_published + self._coalescer.pending_bytes

    def add(self, data: bytes, *, join_at: int | None) -> None:
        self._publish(self._coalescer.add(data, self._loop.time(), join_at=join_at))
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._publish(self._coalescer.flush(self._loop.time()))

    def _arm(self) -> None:
        deadline = self._coalescer.deadline
        if deadline is not None and self._timer is None:
            self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        self._publish(self._coalescer.due(self._loop.time()))
        self._arm()  # the deadline moved on: a block went out since this timer was set

    def _publish(self, blocks: list[Block]) -> None:
        for block in blocks:
            self._broadcast.publish(block.data, join_point=block.join_point)


def _end(
    kind: EndKind, reason: str, detail: str, received: int, first_at: float | None
) -> SessionEnd:
    streamed = 0.0 if first_at is None else time.monotonic() - first_at
    return SessionEnd(kind, reason, detail, received, streamed)
