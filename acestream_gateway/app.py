"""Assembly only: build the components from the settings and tie their lifetimes to the app.

Each resource is set up and torn down by one ``cleanup_ctx`` generator; aiohttp unwinds them in
reverse, so channels stop their engine sessions before the HTTP client they use is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from .engines.client import EngineClient
from .engines.pool import EnginePool
from .fleet.docker import docker_client
from .fleet.reconciler import Reconciler
from .fleet.static import StaticFleet
from .http import dashboard, listings, manage, ops, players, playlists
from .http.errors import error_middleware, request_context
from .http.keys import (
    ENGINE_CLIENT,
    METRICS,
    POOL,
    RECONCILER,
    REGISTRY,
    SETTINGS,
    START_LIMITER,
    STAT_POLLER,
    STATIC_FLEET,
)
from .http.ops import fleet_facts
from .logs import get_logger
from .metrics import Metrics
from .ops.players import StartLimiter
from .ops.scrape import GatewayCollector
from .ops.stats import StatPoller
from .settings import Settings
from .streaming.channel import FailoverPolicy
from .streaming.registry import StreamRegistry
from .streaming.upstream import Timeouts
from .tasks import Supervisor

log = get_logger(__name__)

__all__ = ["ENGINE_CLIENT", "RECONCILER", "STATIC_FLEET", "create_app"]


def create_app(settings: Settings, *, with_fleet: bool = True) -> web.Application:
    """The gateway as an aiohttp application; nothing runs until it starts.

    The fleet is Docker's, or with ENGINE_URLS the static list of engines someone else runs (then
    no Docker client is made). Without the fleet no Docker client is made either and engines are
    whatever is added to the pool (the data path's tests feed it engine emulators).
    """
    app = web.Application(middlewares=[request_context, error_middleware])
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[START_LIMITER] = StartLimiter(settings.player_channel_starts_per_minute)
    app[POOL] = EnginePool(
        max_streams_per_engine=settings.max_streams_per_engine,
        max_engines=len(settings.engine_urls) or settings.max_active_replicas,
        provision_wait_s=settings.provision_wait_s,
        failure_threshold=settings.health_failure_threshold,
    )
    app.cleanup_ctx.append(_engine_client)
    if with_fleet:
        app.cleanup_ctx.append(_static_fleet if settings.static_fleet else _fleet)
    app.cleanup_ctx.append(_registry)
    app.cleanup_ctx.append(_stat_poller)
    app.cleanup_ctx.append(_scrape)
    app.on_shutdown.append(_end_players)
    app.add_routes(players.routes)
    app.add_routes(ops.routes)
    app.add_routes(listings.routes)
    app.add_routes(manage.routes)
    app.add_routes(playlists.routes)
    app.add_routes(dashboard.routes)
    return app


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
        )
        yield


async def _fleet(app: web.Application) -> AsyncIterator[None]:
    async with docker_client(timeout_s=app[SETTINGS].docker_timeout_s) as docker:
        reconciler = Reconciler(
            settings=app[SETTINGS],
            docker=docker,
            pool=app[POOL],
            client=app[ENGINE_CLIENT],
            metrics=app[METRICS],
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
        pool=app[POOL], registry=app[REGISTRY], fleet=lambda: fleet_facts(app)
    )
    registry = app[METRICS].registry
    registry.register(collector)
    try:
        yield
    finally:
        registry.unregister(collector)
