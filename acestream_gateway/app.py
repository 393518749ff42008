"""Assembly only: build the components from the settings and tie their lifetimes to the app.

Each resource is set up and torn down by one ``cleanup_ctx`` generator; aiohttp unwinds them in
reverse, so channels stop their engine sessions before the HTTP client they use is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from .engines.client import EngineClient
from .engines.journal import SessionJournal, journal_path
from .engines.pool import EnginePool
from .engines.recovery import LeftSessions, end_left_sessions, load_left_sessions
from .fleet.docker import FleetError, docker_client
from .fleet.reconciler import Reconciler
from .fleet.static import StaticFleet
from .http import (
    channels,
    dashboard,
    hdhr,
    hls,
    listings,
    manage,
    ops,
    players,
    playlists,
    stations,
)
from .http.channels import CHANNELS
from .http.errors import error_middleware, request_context
from .http.forwarded import forwarded_remote
from .http.hdhr import HDHR_IDENTITY
from .http.keys import (
    ENGINE_CLIENT,
    METRICS,
    POOL,
    RECONCILER,
    REFUSALS,
    REGISTRY,
    SETTINGS,
    START_LIMITER,
    STAT_POLLER,
    STATIC_FLEET,
)
from .http.ops import fleet_facts
from .http.stations import STATIONS, station_facts
from .logs import get_logger
from .metrics import Metrics
from .ops import hdhr as hdhr_answers
from .ops.auth import RefusalLimiter
from .ops.hdhr_discovery import PORT as DISCOVERY_PORT
from .ops.hdhr_discovery import Announcement, DiscoveryProtocol
from .ops.lineup.service import ChannelService
from .ops.players import StartLimiter
from .ops.scrape import GatewayCollector
from .ops.stats import StatPoller
from .settings import Settings
from .streaming.channel import FailoverPolicy
from .streaming.hls.feed import HlsPolicy
from .streaming.registry import StreamRegistry
from .streaming.station import Stations
from .streaming.upstream import Timeouts
from .tasks import Supervisor

log = get_logger(__name__)

_JOURNAL = web.AppKey("session_journal", SessionJournal)
_LEFT_SESSIONS = web.AppKey("left_sessions", LeftSessions)

__all__ = ["ENGINE_CLIENT", "RECONCILER", "STATIC_FLEET", "create_app"]


def create_app(settings: Settings, *, with_fleet: bool = True) -> web.Application:
    """The gateway as an aiohttp application; nothing runs until it starts.

    The fleet is Docker's, or with ENGINE_URLS the static list of engines someone else runs (then
    no Docker client is made). Without the fleet no Docker client is made either and engines are
    whatever is added to the pool (the data path's tests feed it engine emulators).
    """
    middlewares = [request_context, error_middleware]
    if settings.trusted_proxies:
        middlewares.insert(0, forwarded_remote)
    app = web.Application(middlewares=middlewares)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    prefix = settings.player_limit_ipv6_prefix
    app[START_LIMITER] = StartLimiter(settings.player_channel_starts_per_minute, ipv6_prefix=prefix)
    app[REFUSALS] = RefusalLimiter(ipv6_prefix=prefix)
    app[POOL] = EnginePool(
        max_streams_per_engine=settings.max_streams_per_engine,
        max_engines=len(settings.engine_urls) or settings.max_active_replicas,
        provision_wait_s=settings.provision_wait_s,
        failure_threshold=settings.health_failure_threshold,
    )
    app.cleanup_ctx.append(_session_journal)
    app.cleanup_ctx.append(_engine_client)
    if with_fleet:
        app.cleanup_ctx.append(_static_fleet if settings.static_fleet else _fleet)
    app.cleanup_ctx.append(_registry)
    app.cleanup_ctx.append(_stat_poller)
    app.cleanup_ctx.append(_scrape)
    app[HDHR_IDENTITY] = hdhr_answers.Identity(
        device_id=settings.hdhr_device(),
        tuner_count=settings.hdhr_tuners(),
        friendly_name=f"AceStream Gateway {settings.gateway_instance_name}",
    )
    app[STATIONS] = Stations(app[METRICS])
    app.cleanup_ctx.append(_channels)
    app.cleanup_ctx.append(_discovery)
    app.on_shutdown.append(_end_players)
    app.add_routes(players.routes)
    app.add_routes(hls.routes)
    app.add_routes(ops.routes)
    app.add_routes(listings.routes)
    app.add_routes(manage.routes)
    app.add_routes(playlists.routes)
    app.add_routes(dashboard.routes)
    app.add_routes(channels.routes)
    app.add_routes(hdhr.routes)
    app.add_routes(stations.routes)
    return app


async def _session_journal(app: web.Application) -> AsyncIterator[None]:
    """The journal of engine sessions, seeded with what the previous run left (ended by the
    fleet's setup, before any channel can be placed); closed last, after every session stop."""
    settings = app[SETTINGS]
    path = journal_path(settings.state_dir, settings.gateway_instance_name)
    left = await asyncio.to_thread(load_left_sessions, path)
    journal = SessionJournal(path, left.entries)
    app[_LEFT_SESSIONS], app[_JOURNAL] = left, journal
    async with _looping(journal.run, "session journal writer"):
        await journal.flush()  # the file exists from now on: a later start trusts it
        yield
    await journal.close()


async def _end_left_sessions(app: web.Application) -> LeftSessions:
    left = app[_LEFT_SESSIONS]
    await end_left_sessions(
        left,
        app[_JOURNAL],
        app[ENGINE_CLIENT],
        find_timeout_s=app[SETTINGS].engine_api_timeout_s,
    )
    return left


async def _engine_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=True)
    # Health probes get connections of their own, never kept: a probe must prove the engine
    # still takes connections, which a kept-alive one would not.
    probe_connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, auto_decompress=False) as http,
        aiohttp.ClientSession(connector=probe_connector) as probe_http,
    ):
        app[ENGINE_CLIENT] = EngineClient(
            http,
            api_timeout_s=settings.engine_api_timeout_s,
            stop_timeout_s=settings.engine_stop_timeout_s,
            probe_http=probe_http,
            journal=app[_JOURNAL],
        )
        yield


async def _fleet(app: web.Application) -> AsyncIterator[None]:
    left_sessions = await _end_left_sessions(app)  # before any engine is adopted
    settings = app[SETTINGS]
    async with contextlib.AsyncExitStack() as clients:
        dockers = {}
        for endpoint in settings.endpoints():
            client = docker_client(endpoint.url, settings.docker_timeout_s, endpoint.tls)
            try:
                dockers[endpoint.name] = await clients.enter_async_context(client)
            except FleetError as exc:  # its TLS files: the gateway serves with the others
                if not endpoint.named:
                    raise
                log.error("docker_endpoint_unusable", endpoint=endpoint.name, reason=exc.message)
        if not dockers:
            raise FleetError(400, "no Docker endpoint can be used (see the lines above)")
        reconciler = Reconciler(
            settings=settings,
            dockers=dockers,
            pool=app[POOL],
            client=app[ENGINE_CLIENT],
            metrics=app[METRICS],
            left_sessions=left_sessions,
        )
        app[RECONCILER] = reconciler
        await reconciler.check_vpns()  # a VPN that does not publish its engines' ports: refused
        async with _looping(reconciler.run, "fleet reconciler"):
            yield


@asynccontextmanager
async def _looping(body: Callable[[], Awaitable[None]], name: str) -> AsyncIterator[None]:
    """Run a long-lived loop of the app under a supervisor for as long as the block runs (a
    resource's cleanup context: it stops before what the loop uses is torn down)."""
    tasks = Supervisor("app")
    tasks.spawn_loop(body, name=name)
    try:
        yield
    finally:
        await tasks.close()


async def _static_fleet(app: web.Application) -> AsyncIterator[None]:
    await _end_left_sessions(app)  # engines nobody replaces: their sessions are ended, at least
    fleet = StaticFleet(settings=app[SETTINGS], pool=app[POOL], client=app[ENGINE_CLIENT])
    app[STATIC_FLEET] = fleet
    fleet.start()
    try:
        yield
    finally:
        await fleet.close()


async def _end_players(app: web.Application) -> None:
    # Streams never end by themselves: end them first, so the server's wait for open
    # requests is short; the registry's cleanup then stops the engine sessions.
    if REGISTRY in app:
        app[REGISTRY].end_players("the gateway is shutting down")


async def _registry(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    registry = StreamRegistry(
        pool=app[POOL],
        client=app[ENGINE_CLIENT],
        timeouts=Timeouts(
            first_data_s=settings.first_data_timeout_s,
            stall_s=settings.stall_timeout_s,
            keepalive_s=settings.keepalive_interval_s,
            abandon_s=settings.engine_api_timeout_s * 3,
        ),
        window_bytes=settings.player_buffer_bytes,
        linger_s=settings.stream_linger_s,
        failover=FailoverPolicy(
            attempts=settings.failover_attempts, backoff_s=settings.failover_backoff_s
        ),
        close_timeout_s=max(settings.engine_api_timeout_s, settings.engine_stop_timeout_s) + 1,
        max_waiting=settings.max_waiting_channels,
        metrics=app[METRICS],
        hls=HlsPolicy(
            window=settings.hls_window,
            segment_s=settings.hls_segment_s,
            idle_s=settings.hls_idle_s,
        ),
    )
    app[REGISTRY] = registry
    try:
        yield
    finally:
        await registry.close()


async def _stat_poller(app: web.Application) -> AsyncIterator[None]:
    registry = app[REGISTRY]
    poller = StatPoller(
        channels=registry.channels,
        client=app[ENGINE_CLIENT],
        interval_s=app[SETTINGS].stat_interval_s,
    )
    app[STAT_POLLER] = poller
    async with _looping(poller.run, "engine stat poller"):
        yield


async def _scrape(app: web.Application) -> AsyncIterator[None]:
    """The state half of /metrics, read from the components at scrape time."""
    collector = GatewayCollector(
        pool=app[POOL],
        registry=app[REGISTRY],
        fleet=lambda: fleet_facts(app),
        stations=lambda: station_facts(app),
    )
    registry = app[METRICS].registry
    registry.register(collector)
    try:
        yield
    finally:
        registry.unregister(collector)


async def _channels(app: web.Application) -> AsyncIterator[None]:
    """The channel list and its guide: loaded before the gateway listens (within
    CHANNELS_FETCH_TIMEOUT_S each; a failure leaves the lineup empty and is retried), then
    refreshed every CHANNELS_REFRESH_S."""
    settings = app[SETTINGS]
    async with aiohttp.ClientSession() as http:
        service = ChannelService(
            location=settings.channels_location,
            guide_location=settings.guide_location,
            http=http,
            timeout_s=settings.channels_fetch_timeout_s,
            retry_s=settings.source_retry_s,
        )
        app[CHANNELS] = service
        if not service.configured:
            yield
            return
        await service.refresh()
        refresh_s = settings.channels_refresh_s
        async with _looping(lambda: service.run(refresh_s), "channel list refresher"):
            yield


async def _discovery(app: web.Application) -> AsyncIterator[None]:
    """HDHomeRun discovery on UDP 65001 of GATEWAY_HOST, when a channel list is configured and
    HDHR_DISCOVERY is on; a port that cannot be bound is one warning, not a failed start."""
    settings = app[SETTINGS]
    if not (settings.hdhr_discovery and settings.channels_location):
        yield
        return
    identity = app[HDHR_IDENTITY]

    def announcement(host: str) -> Announcement:
        base = settings.public_base_url or f"http://{_url_host(host)}:{settings.gateway_port}"
        return Announcement(
            identity.device_id, identity.tuner_count, base.rstrip("/"), identity.device_auth
        )

    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: DiscoveryProtocol(announcement),
            local_addr=(settings.gateway_host, DISCOVERY_PORT),
        )
    except OSError as exc:
        log.warning(
            "hdhr_discovery_unavailable",
            host=settings.gateway_host,
            port=DISCOVERY_PORT,
            reason=exc.strerror or str(exc),
        )
        yield
        return
    log.info("hdhr_discovery_listening", host=settings.gateway_host, port=DISCOVERY_PORT)
    try:
        yield
    finally:
        transport.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
