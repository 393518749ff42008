"""Serving a session's media: the progressive TS stream and the HLS playlist with its segments.

The TS path reproduces the engine's quirks: the playback URL redirects to a fresh /content/ URL;
response headers wait until prebuffering is done (forever for a dead channel); the body is the
live window at link speed, then real time at the channel's bitrate, paced by byte count in one
piece every ``write_interval_s`` (~100 ms blocks by default; a live engine writes a few KB every
20 ms or so, which ``write_interval_s=0.02`` reproduces); only one reader at a time, a second one
gets a malformed response. Fault knobs (end, stall) and the write interval are read on every
piece, so changing them at run time affects streams already playing.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from . import rawhttp
from .hls import HlsWindow
from .mpegts import TS_PACKET_SIZE
from .sessions import Session
from .state import EngineState, base_url

log = logging.getLogger(__name__)

TICK_S = 0.1
BURST_PACKETS = 65_536 // TS_PACKET_SIZE


class Playback:
    def __init__(self, state: EngineState) -> None:
        self._state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ace/r/{infohash}/{token}", self.redirect)
        app.router.add_get("/content/{infohash}/{key}", self.content)
        app.router.add_get("/ace/m/{infohash}/{name}", self.playlist)
        app.router.add_get("/ace/c/{token}/{name}", self.segment)

    async def redirect(self, request: web.Request) -> web.Response:
        info = request.match_info
        session = self._state.table.find(info["infohash"], info["token"])
        if session is None or session.output != "ts":
            return web.Response(status=404, text="Not Found")
        key = self._state.table.add_content_key(session)
        location = f"{base_url(request)}/content/{session.infohash}/{key}"
        return web.Response(status=302, headers={"Location": location})

    async def content(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        table = self._state.table
        session = table.by_content_key(info["infohash"], info["key"])
        transport = request.transport
        if session is None:
            return web.Response(status=404, text="Not Found")
        if transport is None:
            return rawhttp.taken_over()
        if session.readers:
            table.reader_rejected()
            log.info("reader_rejected infohash=%s pid=%s", session.infohash, session.pid)
            rawhttp.write_second_reader_answer(transport)
            return rawhttp.taken_over()
        table.reader_started(session)
        try:
            await self._stream(session, transport)
        finally:
            table.reader_finished(session, self._state.now())
            transport.close()
        return rawhttp.taken_over()

    async def _stream(self, session: Session, transport: asyncio.Transport) -> None:
        if not await self._prebuffered(session, transport):
            return  # stopped, superseded or abandoned while prebuffering: the connection closes
        state = self._state
        rawhttp.write_stream_head(transport)
        started = state.now()
        await self._send_burst(session, transport, started)
        pacer = _Pacer(session.bitrate_bps, state.now())
        while not session.ended.is_set() and not transport.is_closing():
            now = state.now()
            fault = self._fault(now - started)
            if fault == "end":
                state.table.end(session, "broadcast_ended")
                log.info("session_ended infohash=%s reason=end_after", session.infohash)
                return
            if fault == "stall":
                pacer.restart(now)
            else:
                rawhttp.write(transport, session.source.read(pacer.due(now)))
                await rawhttp.drain(transport)
            # Read on every piece: changing the knob at run time reshapes streams already playing.
            await state.wait_ended(session, state.knobs.write_interval_s)

    async def _send_burst(
        self, session: Session, transport: asyncio.Transport, started: float
    ) -> None:
        """The engine's buffered live window, at whatever speed the reader takes it."""
        packets = self._state.knobs.burst_bytes // TS_PACKET_SIZE
        while packets > 0 and not session.ended.is_set() and not transport.is_closing():
            if self._fault(self._state.now() - started):
                return
            block = min(packets, BURST_PACKETS)
            rawhttp.write(transport, session.source.read(block))
            packets -= block
            await rawhttp.drain(transport)

    def _fault(self, streamed_s: float) -> str | None:
        """The fault knobs as they are now: "end", "stall" or None for a stream this old."""
        knobs = self._state.knobs
        if streamed_s >= knobs.end_after_s:
            return "end"
        if streamed_s >= knobs.stall_after_s:
            return "stall"
        return None

    async def _prebuffered(self, session: Session, transport: asyncio.Transport) -> bool:
        """Hold the response until the session is ready; False if it ends or the caller leaves."""
        state = self._state
        while not session.is_ready(state.now()):
            # aiohttp >= 3.9 does not cancel handlers when the client goes: look now and then.
            if transport.is_closing():
                return False
            if await state.wait_ended(session, min(TICK_S, session.ready_at - state.now())):
                return False
        return not session.ended.is_set() and not transport.is_closing()

    async def playlist(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        name = info["name"]
        session = self._state.table.find(info["infohash"], name.removesuffix(".m3u8"))
        if session is None or session.output != "hls" or not name.endswith(".m3u8"):
            return web.Response(status=404, text="Not Found")
        state, transport = self._state, request.transport
        session.touch(state.now())
        if transport is None or not await self._prebuffered(session, transport):
            if transport is not None:
                transport.close()
            return rawhttp.taken_over()
        now = state.now()
        session.touch(now)
        if session.hls is None:
            session.hls = HlsWindow(session.source, session.keyframe_interval_s, now)
        session.hls.refresh(now)
        segment_url = f"{base_url(request)}/ace/c/{session.token}/{{seq}}.ts"
        return web.Response(
            text=session.hls.playlist(segment_url),
            content_type="application/vnd.apple.mpegurl",
        )

    async def segment(self, request: web.Request) -> web.Response:
        info = request.match_info
        session = self._state.table.by_token(info["token"])
        seq = info["name"].removesuffix(".ts")
        if session is None or session.hls is None or not seq.isdigit():
            return web.Response(status=404, text="Not Found")
        session.touch(self._state.now())
        data = session.hls.segment(int(seq))
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="video/mp2t")


class _Pacer:
    """Real-time pacing by byte count: packets sent * 188 * 8 / bitrate == time since start."""

    def __init__(self, bitrate_bps: int, now: float) -> None:
        self._packets_per_s = bitrate_bps / (TS_PACKET_SIZE * 8)
        self.restart(now)

    def restart(self, now: float) -> None:
        self._start = now
        self._sent = 0

    def due(self, now: float) -> int:
        owed = int((now - self._start) * self._packets_per_s) - self._sent
        self._sent += max(0, owed)
        return max(0, owed)
