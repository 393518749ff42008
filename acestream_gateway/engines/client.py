"""The engine's HTTP API as the gateway uses it: start a session, open its stream, stop it, probe.

One ``aiohttp.ClientSession`` serves every engine (its owner, the app, closes it). Each call has a
timeout that suits it; the stream itself has no total timeout (it is live) and its read timeouts
are the upstream reader's business. Every JSON answer is read up to ``MAX_ANSWER_BYTES`` and
understood by :mod:`.answers`, so whatever an engine answers, a call raises nothing but
:class:`EngineError`. Probes (``status``, ``version``) go over connections of their own that are
never kept: a probe must prove the engine still takes connections. With a session journal, every
session is written down before its start request goes out and crossed out once it is stopped or
refused (:mod:`.journal`), so a later start can end what a dead gateway left behind.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from .answers import (
    MAX_ANSWER_BYTES,
    EngineBadAnswer,
    EngineError,
    EngineNotConnected,
    EngineRefused,
    EngineSession,
    EngineTimeout,
    EngineUnreachable,
    parse_answer,
    rebase,
    session_from_answer,
    stat_from_answer,
    status_from_answer,
    stop_confirmed,
    version_from_answer,
)
from .journal import SessionJournal
from .model import ContentRef, EngineAddress

__all__ = [
    "EngineBadAnswer",
    "EngineClient",
    "EngineError",
    "EngineNotConnected",
    "EngineRefused",
    "EngineSession",
    "EngineTimeout",
    "EngineUnreachable",
    "new_pid",
    "rebase",
]


def new_pid() -> str:
    """A player id of our own for one engine session (the engine kills a session whose content is
    started again under another pid, so each shared session has exactly one)."""
    return secrets.token_hex(16)


class EngineClient:
    """Calls engines over HTTP with per-call timeouts; stateless apart from the shared session."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_timeout_s: float,
        stop_timeout_s: float,
        probe_http: aiohttp.ClientSession | None = None,
        journal: SessionJournal | None = None,
    ) -> None:
        """``probe_http``: a session whose connector never keeps connections (``force_close``),
        for probes; without one, probes share ``http`` and only ask the engine to close theirs
        (a connection another call kept alive may then carry a probe). ``journal``: where the
        sessions this client starts are written down (its writer task must be running)."""
        self._http = http
        self._probe_http = probe_http or http
        self._journal = journal
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
        if self._journal is not None:
            await self._journal.starting(address, content, pid)
        try:
            body = await self._get_json(address.base_url + "/ace/getstream", params, limit)
            session = session_from_answer(address, pid, body)
        except (EngineRefused, EngineNotConnected):
            self.forget_session(pid)  # the engine made no session
            raise
        if self._journal is not None:
            self._journal.started(pid, session.command_url)
        return session

    async def stop_session(self, session: EngineSession) -> bool:
        """Stop a session; True when the engine confirmed or already had no such session.

        Idempotent. Raises :class:`EngineError` when the engine did not confirm in time, so the
        caller can log that a session may linger on the engine.
        """
        body = await self._get_json(session.command_url, {"method": "stop"}, self._stop_timeout)
        stop_confirmed(body)
        self.forget_session(session.pid)
        return True

    def forget_session(self, pid: str) -> None:
        """The session started under ``pid`` is over for this gateway (stopped, or gone with its
        engine): no later start needs to end it."""
        if self._journal is not None:
            self._journal.forget(pid)

    async def stat(self, session: EngineSession) -> dict[str, Any] | None:
        """The session's statistics, or None when the engine no longer knows the session."""
        return stat_from_answer(await self._get_json(session.stat_url, {}, self._api_timeout))

    async def version(self, address: EngineAddress) -> str:
        """The engine's version string; proves its HTTP API answers (the readiness probe of a
        starting engine, so over a connection of its own like :meth:`status`)."""
        body = await self._get_json(
            address.base_url + "/webui/api/service",
            {"method": "get_version"},
            self._api_timeout,
            probe=True,
        )
        return version_from_answer(body)

    async def status(self, address: EngineAddress, timeout_s: float) -> dict[str, Any]:
        """The engine's ``get_status`` answer: the health probe of a running engine.

        A 200 with a JSON ``result`` object means the engine's API answers; anything else raises
        :class:`EngineError` (``EngineUnreachable`` / ``EngineTimeout`` when it did not answer).
        """
        body = await self._get_json(
            address.base_url + "/server/api",
            {"api_version": "3", "method": "get_status"},
            aiohttp.ClientTimeout(total=timeout_s),
            probe=True,
        )
        return status_from_answer(body)

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
        probe: bool = False,
    ) -> dict[str, Any]:
        # A probe must prove the engine still takes connections: one kept alive from an earlier
        # call would answer even after the engine stopped listening. Probes go over the probe
        # session (its connector never keeps a connection) and say so to the engine.
        http = self._probe_http if probe else self._http
        headers = {"Connection": "close"} if probe else None
        try:
            async with http.get(url, params=params, timeout=limit, headers=headers) as response:
                if response.status != 200:
                    raise EngineError(f"engine answered HTTP {response.status}")
                raw = await _read_capped(response)
        except TimeoutError:
            raise EngineTimeout(f"engine did not answer within {limit.total:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise EngineNotConnected("engine unreachable", repr(exc)) from None
        except aiohttp.ClientError as exc:
            raise EngineUnreachable("engine unreachable", repr(exc)) from None
        return parse_answer(raw)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The body, refused once it grows past ``MAX_ANSWER_BYTES`` (the rest is never read)."""
    declared = response.content_length
    if declared is not None and declared > MAX_ANSWER_BYTES:
        raise EngineBadAnswer("engine answer too large", f"{declared} bytes declared")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise EngineBadAnswer("engine answer too large", f"over {MAX_ANSWER_BYTES} bytes")
    return bytes(body)
