"""The application state the HTTP handlers read, under typed keys (set up by ``app``)."""

from __future__ import annotations

from aiohttp import web

from ..engines.client import EngineClient
from ..engines.pool import EnginePool
from ..fleet.reconciler import Reconciler
from ..fleet.static import StaticFleet
from ..metrics import Metrics
from ..ops.auth import RefusalLimiter
from ..ops.players import StartLimiter
from ..ops.stats import StatPoller
from ..settings import Settings
from ..streaming.registry import StreamRegistry

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", EnginePool)
REGISTRY = web.AppKey("registry", StreamRegistry)
ENGINE_CLIENT = web.AppKey("engine_client", EngineClient)
RECONCILER = web.AppKey("reconciler", Reconciler)
STATIC_FLEET = web.AppKey("static_fleet", StaticFleet)
STAT_POLLER = web.AppKey("stat_poller", StatPoller)
METRICS = web.AppKey("metrics", Metrics)
START_LIMITER = web.AppKey("start_limiter", StartLimiter)
REFUSALS = web.AppKey("refusals", RefusalLimiter)
