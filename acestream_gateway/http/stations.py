"""Playing a channel of the lineup: ``/channel/<number>``, ``/channel/<number>.ts`` and the
HDHomeRun tuner's ``/auto/v<number>`` (extra query parameters, such as ``transcode=``, ignored).

A channel's player is a player of its current source's per-content channel, fed by the same code
as ``/ace/getstream`` (``streamout``); when that source fails to start or ends for good, the same
connection goes on with the next source (:mod:`..streaming.station` decides which). Unlike
``/ace/getstream``, the headers go out at once and keep-alive packets follow while a source
starts: media servers drop a tuner that is slow to send its first bytes, and a failure after the
first source cannot be answered with a status anyway.

Channels with players attached count as tuners: one more than ``HDHR_TUNER_COUNT`` is refused
with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable

import structlog
from aiohttp import web

from ..engines.model import ContentRef
from ..logs import get_logger
from ..ops.lineup.numbering import Channel
from ..ops.status import StationFacts
from ..streaming.channel import FailoverPolicy
from ..streaming.errors import (
    ChannelError,
    EngineFailed,
    EngineRefusedChannel,
    NoEngine,
    PlayerLeft,
)
from ..streaming.mpegts import NULL_PACKET
from ..streaming.station import SourceFailure, Station, Stations
from .auth import player_token_refusal
from .channels import CHANNELS
from .errors import json_error
from .hdhr import HDHR_IDENTITY
from .keys import REGISTRY, SETTINGS
from .start_limit import start_refusal
from .streamout import STREAM_HEADERS, LiveResponse, feed, finish, send_headers

log = get_logger(__name__)

STATIONS = web.AppKey("stations", Stations)

_POLL_S = 0.25
"""How often a waiting player's connection is looked at (and a keep-alive packet considered)."""
_TUNER_RETRY_S = 10.0

routes = web.RouteTableDef()


def _channel(request: web.Request) -> Channel:
    number = int(request.match_info["number"])
    channel = request.app[CHANNELS].channel(number)
    if channel is None:
        raise web.HTTPNotFound(text=f"no channel {number} in the lineup")
    return channel


def _tuner_refusal(request: web.Request, channel: Channel) -> web.Response | None:
    """503 when as many other channels as there are tuners have players attached."""
    stations = request.app[STATIONS]
    tuners = request.app[HDHR_IDENTITY].tuner_count
    if stations.is_tuned(channel.key) or stations.tuned() < tuners:
        return None
    log.warning("station_refused_no_tuner", station=channel.number, tuners=tuners)
    detail = f"all {tuners} tuners are in use; stop another channel first"
    return json_error(503, "no_tuner", detail, _TUNER_RETRY_S, "tuner_limit")


def _refusal(request: web.Request, channel: Channel) -> web.Response | None:
    refusal = _tuner_refusal(request, channel)
    if refusal is not None or request.app[STATIONS].is_tuned(channel.key):
        return refusal
    candidates = request.app[CHANNELS].sources(channel).candidates()
    if not candidates:
        detail = "no source of this channel works now; try again later"
        return json_error(503, "no_source", detail, request.app[SETTINGS].source_retry_s)
    return start_refusal(request, candidates[0])


async def probe_station(request: web.Request) -> web.StreamResponse:
    """Players probe before playing; answered without touching an engine."""
    refusal = player_token_refusal(request)
    if refusal is not None:
        return refusal
    _channel(request)  # an unknown number is a 404 here too
    return web.Response(status=200, headers=STREAM_HEADERS)


async def play_station(request: web.Request) -> web.StreamResponse:
    """Play a channel of the lineup through its sources, on one connection."""
    refusal = player_token_refusal(request)
    if refusal is not None:
        return refusal
    channel = _channel(request)
    refusal = _refusal(request, channel)
    if refusal is not None:
        return refusal
    sources = request.app[CHANNELS].sources(channel)
    # Every line of this player names its channel of the lineup, whichever source it plays.
    structlog.contextvars.bind_contextvars(station=channel.number)
    log.info("player_tuning", station=channel.number, name=channel.name, peer=request.remote)
    response = LiveResponse()
    # Counted as a tuner before anything waits, so a burst of requests cannot pass the limit.
    async with request.app[STATIONS].tune(
        channel.key, channel.number, channel.name, sources
    ) as station:
        if not await send_headers(response, request):
            return response
        finished = await _play(request, response, station)
    await finish(response, request.transport, finished, request.app[SETTINGS].stall_timeout_s)
    return response


async def _play(request: web.Request, response: web.StreamResponse, station: Station) -> bool:
    """Feed the player from source after source; True when its stream ended and it kept up."""
    stations = request.app[STATIONS]
    settings = request.app[SETTINGS]
    policy = FailoverPolicy(settings.failover_attempts, settings.failover_backoff_s)
    failed: ContentRef | None = None
    why: SourceFailure | None = None  # why the last source was left: set once moving
    finished = True
    tried: set[ContentRef] = set()  # since the last source that played
    refused = 0  # claims refused in a row while moving to another source
    keepalive = _KeepAlive(request, settings.keepalive_interval_s)
    while (ref := await stations.source(station, failed, why, tried)) is not None:
        tried.add(ref)
        # The failed source's engine session ends before the next one starts: a station never
        # holds two engine sessions at once.
        if failed is not None and not await keepalive.during(
            request.app[REGISTRY].retirer.settled(failed.key)
        ):
            return False
        try:
            # A move (``why`` set) must not begin the next source between two keyframes.
            async with request.app[REGISTRY].play(
                ref, keepalive.until_gone, clean_start=why is not None
            ) as player:
                stations.playing(station, ref)
                finished = await feed(response, request.transport, player, settings.stall_timeout_s)
                channel = player.channel
        except EngineRefusedChannel:
            failed, why = ref, SourceFailure.REFUSED
            continue
        except EngineFailed:
            failed, why = ref, SourceFailure.NO_START
            continue
        except PlayerLeft:
            log.info("player_left", bytes=0)
            return False
        except NoEngine as exc:
            # Moving, the old source's claim may still be held while its session is stopped:
            # the new one waits for room like an engine failover (FAILOVER_ATTEMPTS, backoff).
            refused += 1
            if why is None or refused > policy.attempts:
                log.warning("station_stream_ended", station=station.number, reason=exc.reason)
                return True
            if not await keepalive.for_s(policy.delay_s(refused + 1)):
                return False
            tried.discard(ref)
            failed = None
            continue
        except ChannelError as exc:  # too many starting, shutting down: not the source's
            log.warning("station_stream_ended", station=station.number, reason=exc.reason)
            return True
        if not finished or channel.end_cause != "channel_failed":
            return finished  # the player left or was dropped, or an operator stopped it
        refused = 0
        failed = ref
        why = SourceFailure.ENDED if channel.meter.bytes_in else SourceFailure.NO_START
        if channel.meter.bytes_in:
            tried = {ref}  # it played: a new failure, the list may be gone through again
    return finished


class _KeepAlive:
    """While a player waits for a source to start: a keep-alive packet at once and then every
    ``interval_s``, and the end of the wait when its connection closes (``registry.play``'s
    ``gone``)."""

    def __init__(self, request: web.Request, interval_s: float) -> None:
        self._request = request
        self._interval_s = interval_s

    async def until_gone(self) -> None:
        sent_at = -float("inf")
        while (transport := self._request.transport) is not None and not transport.is_closing():
            now = time.monotonic()
            if now - sent_at >= self._interval_s and not transport.get_write_buffer_size():
                transport.write(NULL_PACKET)
                sent_at = now
            await asyncio.sleep(_POLL_S)

    async def during(self, work: Awaitable[None]) -> bool:
        """Keep the player alive while ``work`` runs; False when it went away first."""
        working = asyncio.ensure_future(work)
        alive = asyncio.ensure_future(self.until_gone())
        try:
            await asyncio.wait([working, alive], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (working, alive):
                task.cancel()
            await asyncio.gather(working, alive, return_exceptions=True)
        transport = self._request.transport
        return transport is not None and not transport.is_closing()

    async def for_s(self, seconds: float) -> bool:
        """Keep the player alive for ``seconds``; False when it went away meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.until_gone()
        transport = self._request.transport
        return transport is not None and not transport.is_closing()


def station_facts(app: web.Application) -> StationFacts:
    """The lineup's channels as they play, for the status and the metrics."""
    if STATIONS not in app or CHANNELS not in app:
        return StationFacts()
    service = app[CHANNELS]
    return StationFacts(
        tuners=app[HDHR_IDENTITY].tuner_count,
        tuned=app[STATIONS].tuned(),
        without_source=sum(
            1 for channel in service.lineup.channels if not service.sources(channel).working
        ),
        stations=[station.describe() for station in app[STATIONS].all()],
    )


for _path in (r"/channel/{number:\d+}", r"/channel/{number:\d+}.ts", r"/auto/v{number:\d+}"):
    routes.route("HEAD", _path)(probe_station)
    routes.get(_path, allow_head=False)(play_station)
