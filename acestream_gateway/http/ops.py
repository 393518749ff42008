"""What operators and orchestrators call: liveness, readiness and the orchestrator status."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..ops import status
from .auth import read
from .keys import METRICS, POOL, RECONCILER, REGISTRY, SETTINGS
from .stations import station_facts

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Readiness: a new channel could be placed now, or the fleet can still grow."""
    snapshot = take_snapshot(request.app)
    return web.json_response(
        status.readiness(snapshot), status=200 if status.ready(snapshot) else 503
    )


@routes.get("/orchestrator/status")
@read
async def orchestrator_status(request: web.Request) -> web.Response:
    """acestream-orchestrator's status, with its field names."""
    return web.json_response(status.status(take_snapshot(request.app)))


@routes.get("/metrics")
@read
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this gateway (its own registry, rendered by prometheus-client)."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def fleet_facts(app: web.Application) -> status.FleetFacts:
    """What the fleet knows beyond the pool (nothing without a Docker fleet)."""
    if RECONCILER not in app:
        return status.FleetFacts()
    reconciler = app[RECONCILER]
    return status.FleetFacts(
        breaker=reconciler.status().breaker.value,
        vpns=reconciler.vpn_status(),
        adopted=reconciler.adopted.is_set(),
        endpoints=reconciler.endpoint_status(),
    )


def take_snapshot(app: web.Application) -> status.Snapshot:
    settings = app[SETTINGS]
    channels = app[REGISTRY].channels() if REGISTRY in app else []
    return status.take_snapshot(
        app[POOL],
        channels,
        fleet_facts(app),
        # A fixed list of engines keeps no spare of its own.
        min_replicas=0 if settings.static_fleet else settings.min_replicas,
        wall=time.time(),
        stations=station_facts(app),
    )
