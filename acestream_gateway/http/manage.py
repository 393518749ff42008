"""Operators' actions: start, drain and remove engines, stop a stream, reconcile the fleet now.

Each needs the API key (when one is set), is logged with who asked (the peer's address) and what,
and answers JSON: 404 for an unknown engine or stream, 409 when the action cannot apply (a fixed
ENGINE_URLS fleet, an engine in the wrong state, a fleet at MAX_ACTIVE_REPLICAS), 502 when Docker
refuses the call, 503 when Docker cannot be reached or answers too slowly.
"""

from __future__ import annotations

from aiohttp import web

from ..engines.model import Engine
from ..fleet.docker import FleetError
from ..fleet.reconciler import ActionRefused, Reconciler
from ..logs import get_logger
from ..streaming.channel import Channel
from .auth import management
from .errors import json_error
from .keys import RECONCILER, REGISTRY

log = get_logger(__name__)

routes = web.RouteTableDef()

_NO_FLEET = "the gateway runs no engines here (a fixed ENGINE_URLS list or no Docker fleet)"


def _reconciler(request: web.Request) -> Reconciler:
    if RECONCILER not in request.app:
        raise ActionRefused(_NO_FLEET)
    return request.app[RECONCILER]


def _engine_json(engine: Engine) -> dict[str, object]:
    return {"id": engine.id, "name": engine.name, "state": engine.state.value}


def _done(
    request: web.Request, action: str, target: str, body: object, status: int
) -> web.Response:
    log.info("management_action", action=action, target=target, peer=request.remote, status=status)
    return web.json_response(body, status=status)


def _refused(request: web.Request, action: str, target: str, exc: Exception) -> web.Response:
    status, kind, detail = _refusal(exc)
    log.warning(
        "management_action_refused",
        action=action,
        target=target,
        peer=request.remote,
        status=status,
        reason=detail,
    )
    return json_error(status, kind, detail)


def _refusal(exc: Exception) -> tuple[int, str, str]:
    """The status, kind and detail of a refused action (the operator's mistake, the fleet's
    state, or Docker's failure: each a JSON answer, never a bare 500)."""
    if isinstance(exc, ActionRefused):
        return (404, "not_found", exc.message) if exc.unknown else (409, "conflict", exc.message)
    if isinstance(exc, FleetError) and not exc.unreachable:
        return 502, "docker_error", f"Docker refused: {exc.message}"
    return 503, "docker_unavailable", "the Docker API cannot be reached or answers too slowly"


@routes.post("/engines")
@management
async def start_engine(request: web.Request) -> web.Response:
    """Start one engine now."""
    try:
        engine = await _reconciler(request).actions.start_engine()
    except (ActionRefused, FleetError) as exc:
        return _refused(request, "start_engine", "-", exc)
    return _done(request, "start_engine", engine.name, _engine_json(engine), 201)


@routes.post("/engines/{engine_id}/drain")
@management
async def drain_engine(request: web.Request) -> web.Response:
    """No new stream goes to the engine; it is removed once it carries none."""
    target = request.match_info["engine_id"]
    try:
        engine = _reconciler(request).actions.drain(target)
    except ActionRefused as exc:
        return _refused(request, "drain_engine", target, exc)
    return _done(request, "drain_engine", engine.name, _engine_json(engine), 202)


@routes.delete("/engines/{engine_id}")
@management
async def remove_engine(request: web.Request) -> web.Response:
    """Remove the engine now; its channels move to other engines."""
    target = request.match_info["engine_id"]
    try:
        engine = await _reconciler(request).actions.remove_engine(target)
    except (ActionRefused, FleetError) as exc:
        return _refused(request, "remove_engine", target, exc)
    return _done(
        request, "remove_engine", engine.name, {**_engine_json(engine), "removed": True}, 200
    )


@routes.delete("/streams/{key}")
@management
async def stop_stream(request: web.Request) -> web.Response:
    """Stop a stream: its players' responses end and its engine session is stopped."""
    key = request.match_info["key"]
    channel = _find(request, key)
    if channel is None:
        exc = ActionRefused(f"no stream {key!r}", unknown=True)
        return _refused(request, "stop_stream", key, exc)
    request.app[REGISTRY].stop(channel.content.key)
    body = {"key": channel.content.key, "stopped": True, "players": channel.players}
    return _done(request, "stop_stream", channel.content.key, body, 200)


def _find(request: web.Request, key: str) -> Channel | None:
    """The channel by its key (``id:<content id>:<file indexes>``), or by its content id alone."""
    channels = request.app[REGISTRY].channels() if REGISTRY in request.app else []
    exact = next((c for c in channels if c.content.key == key), None)
    return exact or next((c for c in channels if c.content.value == key.lower()), None)


@routes.post("/fleet/reconcile")
@management
async def reconcile(request: web.Request) -> web.Response:
    """Reconcile the fleet with Docker now (in the background): 202."""
    try:
        _reconciler(request).reconcile_soon()
    except ActionRefused as exc:
        return _refused(request, "reconcile", "-", exc)
    return _done(request, "reconcile", "-", {"accepted": True}, 202)
