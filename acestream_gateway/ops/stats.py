"""The engines' own figures of playing sessions (peers, speeds, ``livepos``), polled by one task.

An engine answers ``stat_url`` with what it knows of a session; listing streams must not ask it
once per request (N engine calls per status request is what the incumbents did). One task asks
every playing session's engine on an interval, a bounded number at a time, each under the
engine API timeout, and keeps the last answer per channel; ``/streams`` shows that. Values come
as strings or numbers, in snake_case or camelCase depending on the engine version:
:func:`figures_from_stat` reads both, and anything else as "no figure". One session's poll
failing, whatever the reason, never ends the round of the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engines.client import EngineClient, EngineError, EngineSession
from ..logs import get_logger
from ..streaming.channel import Channel

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """One stat answer of one session, taken at ``at`` (wall time)."""

    session_id: str  # the session they are of: a failover makes them stale
    at: float
    status: str | None
    peers: int | None
    speed_down_kbps: int | None
    speed_up_kbps: int | None
    downloaded: int | None
    uploaded: int | None
    livepos: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "peers": self.peers,
            "speed_down": self.speed_down_kbps,
            "speed_up": self.speed_up_kbps,
            "downloaded": self.downloaded,
            "uploaded": self.uploaded,
            "livepos": self.livepos,
            "updated_at": self.at,
        }


def _number(value: object) -> int | None:
    """An engine figure as an integer (they come as numbers or strings), None when it is not
    one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(float(value))
    except (ValueError, OverflowError):  # not a number, NaN, infinity
        return None


def _first(stat: Mapping[str, Any], *names: str) -> object:
    return next((stat[n] for n in names if n in stat), None)


def figures_from_stat(session_id: str, stat: Mapping[str, Any], at: float) -> EngineFigures:
    """The figures of one stat answer, whatever the engine version's spelling."""
    status = stat.get("status")
    livepos = stat.get("livepos")
    return EngineFigures(
        session_id=session_id,
        at=at,
        status=str(status) if status is not None else None,
        peers=_number(stat.get("peers")),
        speed_down_kbps=_number(_first(stat, "speed_down", "speedDown")),
        speed_up_kbps=_number(_first(stat, "speed_up", "speedUp")),
        downloaded=_number(stat.get("downloaded")),
        uploaded=_number(stat.get("uploaded")),
        livepos=dict(livepos) if isinstance(livepos, Mapping) else None,
    )


class StatPoller:
    """Keeps the last engine figures of every playing channel; see the module docstring."""

    def __init__(
        self,
        *,
        channels: Callable[[], Sequence[Channel]],
        client: EngineClient,
        interval_s: float,
        concurrency: int = 8,
    ) -> None:
        self._channels = channels
        self._client = client
        self._interval_s = interval_s
        self._limit = asyncio.Semaphore(concurrency)
        self._figures: dict[str, EngineFigures] = {}

    def figures(self, channel: Channel) -> EngineFigures | None:
        """The channel's last figures, if they are of the session it plays now."""
        figures = self._figures.get(channel.content.key)
        session = channel.session
        if figures is None or session is None or figures.session_id != _id(session):
            return None
        return figures

    async def run(self) -> None:
        """Poll for ever (the app's supervisor owns and cancels it)."""
        while True:
            await self.poll_once()
            await asyncio.sleep(self._interval_s)

    async def poll_once(self) -> None:
        """One round: every playing channel's session, at most ``concurrency`` at a time."""
        playing = {c.content.key: c.session for c in self._channels() if c.session is not None}
        for key in set(self._figures) - set(playing):
            del self._figures[key]  # the channel ended
        await asyncio.gather(*(self._poll(key, s) for key, s in playing.items()))

    async def _poll(self, key: str, session: EngineSession) -> None:
        async with self._limit:
            try:
                stat = await self._client.stat(session)
            except EngineError as exc:
                log.debug("engine_stat_failed", content=key, reason=exc.reason)
                return
            except Exception:  # the guard of one poll: the round's other polls go on
                log.exception("engine_stat_crashed", content=key)
                return
        if stat is not None:
            self._figures[key] = figures_from_stat(_id(session), stat, time.time())


def _id(session: EngineSession) -> str:
    return session.playback_session_id or session.pid
