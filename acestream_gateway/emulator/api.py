"""The engine's JSON API: version and status probes, starting sessions, stat and stop.

Answers follow the engine's shapes exactly (ENGINE_API.md): getstream answers HTTP 200 with either
``response`` or ``error`` set, URLs are absolute and built from the caller's Host header, and the
stat/command URLs of a session that is gone answer "unknown playback session id".
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .inputs import InputError, parse_content
from .sessions import Session
from .state import EngineState, base_url

log = logging.getLogger(__name__)

UNKNOWN_SESSION = "unknown playback session id"
UNKNOWN_METHOD = "unknown method"
UNKNOWN_CONTENT = "failed to load content"


class EngineApi:
    def __init__(self, state: EngineState) -> None:
        self._state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/webui/api/service", self.service)
        app.router.add_get("/server/api", self.server_api)
        app.router.add_get("/ace/getstream", self.start)
        app.router.add_get("/ace/manifest.m3u8", self.start)
        app.router.add_get("/ace/stat/{infohash}/{token}", self.stat)
        app.router.add_get("/ace/cmd/{infohash}/{token}", self.command)

    async def service(self, request: web.Request) -> web.Response:
        await self._state.pause(self._state.knobs.api_delay_s)
        if request.query.get("method") != "get_version":
            return web.json_response({"result": None, "error": UNKNOWN_METHOD})
        return web.json_response({"result": self._version(), "error": None})

    async def server_api(self, request: web.Request) -> web.Response:
        await self._state.pause(self._state.knobs.api_delay_s)
        method = request.query.get("method")
        if method == "get_status":
            return web.json_response(
                {"result": {"playlist_loaded": True, "version": self._version()}}
            )
        if method == "get_network_connection_status":
            connected = self._state.knobs.network_connected
            return web.json_response({"result": {"connected": connected}})
        return web.json_response({"result": None, "error": UNKNOWN_METHOD})

    async def start(self, request: web.Request) -> web.Response:
        """getstream / manifest.m3u8: JSON with format=json, else a 302 to the playback URL."""
        as_json = request.query.get("format") == "json"
        if not await self._state.pause(self._state.knobs.json_delay_s):
            return _start_error("engine is shutting down", as_json)
        knobs = self._state.knobs
        try:
            ref = parse_content(request.query)
        except InputError as exc:
            return _start_error(str(exc), as_json)
        if ref.matches(knobs.unknown_ids):
            return _start_error(UNKNOWN_CONTENT, as_json)
        output = "hls" if request.path.endswith(".m3u8") else "ts"
        pid = request.query.get("pid", "")
        table = self._state.table
        started = table.counters.sessions_started
        session = table.open(ref, pid, output, knobs, self._state.now())
        if table.counters.sessions_started != started:
            log.info("session_started infohash=%s pid=%s output=%s", ref.infohash, pid, output)
        urls = session_urls(base_url(request), session)
        if not as_json:
            return web.Response(status=302, headers={"Location": urls["playback_url"]})
        answer = {
            **urls,
            "infohash": session.infohash,
            "playback_session_id": session.playback_session_id,
            "is_live": 1,
            "is_encrypted": 0,
            "client_session_id": -1,
        }
        return web.json_response({"response": answer, "error": None})

    async def stat(self, request: web.Request) -> web.Response:
        await self._state.pause(self._state.knobs.api_delay_s)
        session = self._session(request)
        if session is None:
            return web.json_response({"response": None, "error": UNKNOWN_SESSION})
        state = self._state
        stat = session.stat(state.now(), state.wall(), state.knobs.stat_camel_case)
        return web.json_response({"response": stat, "error": None})

    async def command(self, request: web.Request) -> web.Response:
        """method=stop ends the session; a stop_delay_s knob makes the engine hang first."""
        if self._session(request) is None:
            return web.json_response({"response": None, "error": UNKNOWN_SESSION})
        if request.query.get("method") != "stop":
            return web.json_response({"response": None, "error": UNKNOWN_METHOD})
        info = request.match_info
        # The stop acts after the delay even if the caller gave up waiting for the answer.
        stopping = self._state.detach(self._stop(info["infohash"], info["token"]))
        if await asyncio.shield(stopping):
            return web.json_response({"response": "ok", "error": None})
        return web.json_response({"response": None, "error": UNKNOWN_SESSION})

    async def _stop(self, infohash: str, token: str) -> bool:
        if not await self._state.pause(self._state.knobs.stop_delay_s):
            return False  # shutting down: every session ends anyway
        session = self._state.table.find(infohash, token)
        if session is None:
            return False
        self._state.table.stop(session)
        log.info("session_stopped infohash=%s pid=%s", session.infohash, session.pid)
        return True

    def _session(self, request: web.Request) -> Session | None:
        info = request.match_info
        return self._state.table.find(info["infohash"], info["token"])

    def _version(self) -> dict[str, object]:
        knobs = self._state.knobs
        return {"code": knobs.version_code, "platform": "linux", "version": knobs.version}


def session_urls(base: str, session: Session) -> dict[str, str]:
    tail = f"{session.infohash}/{session.token}"
    playback = f"/ace/m/{tail}.m3u8" if session.output == "hls" else f"/ace/r/{tail}"
    return {
        "playback_url": base + playback,
        "stat_url": f"{base}/ace/stat/{tail}",
        "command_url": f"{base}/ace/cmd/{tail}",
    }


def _start_error(message: str, as_json: bool) -> web.Response:
    # JSON callers always get HTTP 200; a player following the plain URL gets a plain failure.
    return web.json_response({"response": None, "error": message}, status=200 if as_json else 500)
