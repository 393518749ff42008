"""Who may play, asked the same way by every player endpoint (``/ace/getstream`` and HLS): the
player token, then the per-client start limit, each refusal a JSON answer."""

from __future__ import annotations

from aiohttp import web

from ..engines.model import ContentRef
from ..logs import get_logger
from ..ops.auth import Verdict
from ..ops.players import token_verdict
from .errors import json_error
from .keys import REGISTRY, SETTINGS, START_LIMITER

log = get_logger(__name__)


def token_refusal(request: web.Request) -> web.Response | None:
    """401/403 when PLAYER_TOKEN is set and the query's ``token`` is missing or wrong."""
    secret = request.app[SETTINGS].player_token
    verdict = token_verdict(
        secret.get_secret_value() if secret else None, request.query.get("token")
    )
    if verdict is Verdict.MISSING:
        return json_error(401, "unauthorized", "this gateway needs its player token: ?token=…")
    if verdict is Verdict.WRONG:
        log.warning("player_token_wrong", peer=request.remote)
        return json_error(403, "forbidden", "the player token is wrong")
    return None


def start_refusal(request: web.Request, content: ContentRef) -> web.Response | None:
    """429 when this client started too many distinct channels within the last minute (joining
    a channel that already plays is never refused)."""
    if request.app[REGISTRY].is_playing(content):
        return None
    wait_s = request.app[START_LIMITER].allow(request.remote or "", content.key)
    if wait_s is None:
        return None
    limit = request.app[SETTINGS].player_channel_starts_per_minute
    log.warning("player_start_limited", peer=request.remote, limit=limit)
    detail = f"at most {limit} channels may be started per minute from one client"
    return json_error(429, "too_many_channels", detail, wait_s)
