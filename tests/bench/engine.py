"""The engine emulator as the benchmark's upstream: its process, and sessions opened by hand.

The gateway opens its own sessions; cfanout cannot (it speaks no JSON and follows no redirect),
so for it a session is started with ``format=json`` and its playback URL's 302 is followed here,
giving the ``/content/...`` path that plays directly, for one reader.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Stream:
    """What the emulator streams: bitrate after the burst, burst size, prebuffer delay."""

    bitrate_bps: int
    burst_bytes: int
    prebuffer_s: float

    @property
    def bytes_per_s(self) -> float:
        return self.bitrate_bps / 8

    def env(self) -> dict[str, str]:
        return {
            "EMULATOR_BITRATE_BPS": str(self.bitrate_bps),
            "EMULATOR_BURST_BYTES": str(self.burst_bytes),
            "EMULATOR_PREBUFFER_S": str(self.prebuffer_s),
        }


@dataclass(frozen=True, slots=True)
class DirectSession:
    """An engine session opened without the gateway, and the path that plays it."""

    content_path: str
    command_path: str


class EngineError(RuntimeError):
    """The emulator did not answer as the benchmark expects."""


def argv(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "acestream_gateway.emulator",
        "--client-console",
        "--http-port",
        str(port),
        "--bind-all",
    ]


def wait_up(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            get_json(port, "/webui/api/service?method=get_version")
        except (OSError, EngineError):
            time.sleep(0.1)
            continue
        return
    raise EngineError(f"the emulator on port {port} did not answer within {timeout_s:g} s")


def open_direct(port: int, content_id: str, pid: str) -> DirectSession:
    """Start a session as a player would with ``format=json``, then resolve its redirect."""
    query = urlencode({"format": "json", "id": content_id, "pid": pid})
    body = get_json(port, f"/ace/getstream?{query}")
    answer = body.get("response")
    if not isinstance(answer, dict):
        raise EngineError(f"the emulator refused the session: {body.get('error')}")
    status, location = _get(port, urlsplit(str(answer["playback_url"])).path)
    if status != 302 or not location:
        raise EngineError(f"the playback URL answered {status}, not a 302 to the content")
    return DirectSession(
        content_path=urlsplit(location).path,
        command_path=urlsplit(str(answer["command_url"])).path,
    )


def stop(port: int, session: DirectSession) -> None:
    get_json(port, f"{session.command_path}?method=stop")


def active_sessions(port: int) -> int:
    return int(stats(port)["sessions_active"])


def stats(port: int) -> dict[str, Any]:
    return get_json(port, "/emulator/stats")


def set_knobs(port: int, knobs: dict[str, object]) -> None:
    """Change the emulator's knobs (sessions opened from now on stream with them)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", "/emulator/control", body=json.dumps(knobs))
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise EngineError(f"the emulator refused the knobs {knobs}: {response.status}")


def get_json(port: int, path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        body = json.loads(data)
    except ValueError:
        raise EngineError(f"GET {path} answered {response.status} without JSON") from None
    if not isinstance(body, dict):
        raise EngineError(f"GET {path} answered {body!r}")
    return body


def _get(port: int, path: str) -> tuple[int, str | None]:
    """Status and Location of one GET, redirects not followed."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Location")
    finally:
        conn.close()
