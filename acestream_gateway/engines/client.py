"""The engine's HTTP API as the gateway uses it: start a session, open its stream, stop it, probe.

One ``aiohttp.ClientSession`` serves every engine (its owner, the app, closes it). Each call has a
timeout that suits it; the stream itself has no total timeout (it is live) and its read timeouts
are the upstream reader's business. URLs the engine returns are built from the ``Host`` we used,
so only their path is kept and joined to the engine's own address.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .model import ContentRef, EngineAddress

_UNKNOWN_SESSION = "unknown playback session id"


class EngineError(Exception):
    """An engine call failed; ``reason`` is short and safe to show a player (no address, no
    exception text), ``detail`` says more for the logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


class EngineUnreachable(EngineError):
    """The engine did not answer (connection refused, reset, timeout)."""


class EngineTimeout(EngineUnreachable):
    """The engine did not answer in time; it may still act on the request later."""


class EngineRefused(EngineError):
    """The engine answered with an error for this content (unknown or broken channel)."""


@dataclass(frozen=True, slots=True)
class EngineSession:
    """One playback session on one engine, with its URLs rebased on the engine's address."""

    address: EngineAddress
    pid: str
    playback_url: str
    stat_url: str
    command_url: str
    infohash: str
    playback_session_id: str
    is_live: bool


def new_pid() -> str:
    """A player id of our own for one engine session (the engine kills a session whose content is
    started again under another pid, so each shared session has exactly one)."""
    return secrets.token_hex(16)


def rebase(address: EngineAddress, url: str) -> str:
    """Keep only the path and query of an engine URL and put the engine's own address in front."""
    parts = urlsplit(url)
    if not parts.path.startswith("/"):
        raise EngineError("engine returned an unusable URL", repr(url))
    return address.base_url + parts.path + (f"?{parts.query}" if parts.query else "")


class EngineClient:
    """Calls engines over HTTP with per-call timeouts; stateless apart from the shared session."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_timeout_s: float,
        stop_timeout_s: float,
        probe_http: aiohttp.ClientSession | None = None,
    ) -> None:
        """``probe_http``: a session whose connector never keeps connections (``force_close``),
        for health probes; without one, probes ask the engine to close theirs."""
        self._http = http
        self._probe_http = probe_http or http
        self._api_timeout = aiohttp.ClientTimeout(total=api_timeout_s)
        self._stop_timeout = aiohttp.ClientTimeout(total=stop_timeout_s)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The shared session (the fleet asks VPN control servers over it too)."""
        return self._http

    async def start_session(
        self,
        address: EngineAddress,
        content: ContentRef,
        pid: str,
        timeout_s: float | None = None,
    ) -> EngineSession:
        """Ask the engine to start ``content`` for ``pid`` and return the session it made.

        Asking again with the same pid returns the same session, which is how a session whose
        first answer timed out is found again (to stop it).
        """
        params = {"format": "json", **content.engine_params(), "pid": pid}
        limit = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._api_timeout
        body = await self._get_json(address.base_url + "/ace/getstream", params, limit)
        response = body.get("response")
        if body.get("error") or not isinstance(response, dict):
            raise EngineRefused(f"engine refused the channel: {body.get('error') or 'no response'}")
        try:
            return EngineSession(
                address=address,
                pid=pid,
                playback_url=rebase(address, str(response["playback_url"])),
                stat_url=rebase(address, str(response["stat_url"])),
                command_url=rebase(address, str(response["command_url"])),
                infohash=str(response.get("infohash", "")),
                playback_session_id=str(response.get("playback_session_id", "")),
                is_live=bool(response.get("is_live", 1)),
            )
        except KeyError as exc:
            raise EngineError(f"engine answer lacks {exc.args[0]}") from None

    async def stop_session(self, session: EngineSession) -> bool:
        """Stop a session; True when the engine confirmed or already had no such session.

        Idempotent. Raises :class:`EngineError` when the engine did not confirm in time, so the
        caller can log that a session may linger on the engine.
        """
        body = await self._get_json(session.command_url, {"method": "stop"}, self._stop_timeout)
        error = body.get("error")
        if error and _UNKNOWN_SESSION not in str(error):
            raise EngineError(f"engine did not stop the session: {error}")
        return True

    async def stat(self, session: EngineSession) -> dict[str, Any] | None:
        """The session's statistics, or None when the engine no longer knows the session."""
        body = await self._get_json(session.stat_url, {}, self._api_timeout)
        response = body.get("response")
        return response if isinstance(response, dict) else None

    async def version(self, address: EngineAddress) -> str:
        """The engine's version string; proves its HTTP API answers."""
        body = await self._get_json(
            address.base_url + "/webui/api/service", {"method": "get_version"}, self._api_timeout
        )
        result = body.get("result")
        if not isinstance(result, dict) or "version" not in result:
            raise EngineError("engine version answer lacks a version")
        return str(result["version"])

    async def status(self, address: EngineAddress, timeout_s: float) -> dict[str, Any]:
        """The engine's ``get_status`` answer: the health probe of a running engine.

        A 200 with a JSON ``result`` object means the engine's API answers; anything else raises
        :class:`EngineError` (``EngineUnreachable`` / ``EngineTimeout`` when it did not answer).
        """
        body = await self._get_json(
            address.base_url + "/server/api",
            {"api_version": "3", "method": "get_status"},
            aiohttp.ClientTimeout(total=timeout_s),
            fresh_connection=True,
        )
        result = body.get("result")
        if not isinstance(result, dict):
            raise EngineError("engine status answer lacks a result")
        return result

    async def open_stream(self, session: EngineSession) -> aiohttp.ClientResponse:
        """Open the session's playback URL; the caller reads it and must release it.

        The engine holds its response headers back while it prebuffers, so the caller bounds this
        call by its first-data timeout; reads are bounded by the caller too (live: no total).
        """
        try:
            response = await self._http.get(
                session.playback_url,
                headers={"Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        except aiohttp.ClientError as exc:
            raise EngineUnreachable("engine stream failed to open", repr(exc)) from None
        if response.status != 200:
            response.release()
            raise EngineError(f"engine stream answered HTTP {response.status}")
        return response

    async def _get_json(
        self,
        url: str,
        params: dict[str, str],
        limit: aiohttp.ClientTimeout,
        *,
        fresh_connection: bool = False,
    ) -> dict[str, Any]:
        # A probe must prove the engine still takes connections: one kept alive from an earlier
        # call would answer even after the engine stopped listening.
        headers = {"Connection": "close"} if fresh_connection else None
        try:
            async with self._http.get(
                url, params=params, timeout=limit, headers=headers
            ) as response:
                if response.status != 200:
                    raise EngineError(f"engine answered HTTP {response.status}")
                body = await response.json(content_type=None)
        except TimeoutError:
            raise EngineTimeout(f"engine did not answer within {limit.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise EngineUnreachable("engine unreachable", repr(exc)) from None
        except ValueError:
            raise EngineError("engine answered with malformed JSON") from None
        if not isinstance(body, dict):
            raise EngineError("engine answered with unexpected JSON")
        return body
