"""The per-client start limit, asked the same way by every player endpoint that may start a
channel (``/ace/getstream`` and the HLS playlist); the player token is ``auth``'s."""

from __future__ import annotations

from aiohttp import web

from ..engines.model import ContentRef
from ..logs import get_logger
from .errors import json_error
from .keys import REGISTRY, SETTINGS, START_LIMITER

log = get_logger(__name__)


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
