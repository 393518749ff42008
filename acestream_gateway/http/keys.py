"""The application state the HTTP handlers read, under typed keys (set up by ``app``)."""

from __future__ import annotations

from aiohttp import web

from ..engines.pool import EnginePool
from ..settings import Settings
from ..streaming.registry import StreamRegistry

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", EnginePool)
REGISTRY = web.AppKey("registry", StreamRegistry)
