"""The emulator's own endpoints (the real engine has none): change knobs, trigger faults, count.

``GET /emulator/control`` shows the knobs; ``POST /emulator/control`` with a JSON object merges knob
changes (same names as the knobs, e.g. ``{"stall_after_s": 0, "refuse": "close"}``) and runs
actions (``"crash": true``, ``"end_sessions": true``, ``"reset_stats": true``). ``GET
/emulator/stats`` reports the session and reader counters and the active sessions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from .config import KnobError, Knobs

CONTROL_PREFIX = "/emulator/"
ACTIONS = ("crash", "end_sessions", "reset_stats")


class Controller(Protocol):
    @property
    def knobs(self) -> Knobs: ...

    async def update_knobs(self, changes: Mapping[str, object]) -> Knobs: ...

    def crash_soon(self) -> None: ...

    def end_sessions(self) -> int: ...

    def stats(self) -> dict[str, object]: ...

    def reset_stats(self) -> None: ...


class ControlApi:
    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(CONTROL_PREFIX + "control", self.show)
        app.router.add_post(CONTROL_PREFIX + "control", self.change)
        app.router.add_get(CONTROL_PREFIX + "stats", self.stats)

    async def show(self, request: web.Request) -> web.Response:
        return web.json_response({"knobs": self._controller.knobs.as_json()})

    async def change(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            return _bad_request("body must be a JSON object")
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object")
        actions = {name: body.pop(name) for name in ACTIONS if name in body}
        try:
            knobs = await self._controller.update_knobs(body)
        except KnobError as exc:
            return _bad_request(str(exc))
        answer: dict[str, object] = {"knobs": knobs.as_json()}
        if actions.get("reset_stats"):
            self._controller.reset_stats()
        if actions.get("end_sessions"):
            answer["sessions_ended"] = self._controller.end_sessions()
        if actions.get("crash"):
            self._controller.crash_soon()
        return web.json_response(answer)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._controller.stats())


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
