"""Playback sessions and the engine's rules about them, plus the counters tests read.

The engine keys sessions by content and player id (pid): the same content asked again with the same
pid gets the running session back; with another pid it kills the earlier session of that content.
A pid names one player, which plays one thing at a time, so asking for another content with a pid
that already has a session also kills that session: this is our model of "different contents need
different pids" (and why two contents started without any pid, which is one empty pid, kill each
other). A killed session's reader gets EOF and its stat/command URLs answer "unknown playback
session id". Everything here is synchronous and owned by the event loop's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import asdict, dataclass

from .config import NEVER, Knobs
from .hls import HlsWindow
from .inputs import ContentRef
from .mpegts import TsStream

PIECE_BYTES = 16_384
_UPLOAD_SHARE = 0.15


@dataclass
class Counters:
    """What a test needs to prove a caller never exceeded a limit and never leaked a session."""

    sessions_started: int = 0
    sessions_stopped: int = 0
    sessions_superseded: int = 0
    sessions_ended: int = 0
    readers_active: int = 0
    readers_rejected: int = 0
    max_concurrent_sessions: int = 0
    max_concurrent_readers: int = 0


class Session:
    """One playback session: its URLs' tokens, its prebuffer deadline and its live source."""

    def __init__(self, ref: ContentRef, pid: str, output: str, knobs: Knobs, now: float) -> None:
        self.ref = ref
        self.infohash = ref.infohash
        self.pid = pid
        self.output = output
        self.token = secrets.token_hex(16)
        self.playback_session_id = secrets.token_hex(20)
        self.created_at = now
        prebuffer = NEVER if ref.matches(knobs.dead_ids) else knobs.prebuffer_s
        self.ready_at = now + prebuffer
        self.keyframe_interval_s = knobs.keyframe_interval_s
        self.source = TsStream(
            bitrate_bps=knobs.bitrate_bps, keyframe_interval_s=knobs.keyframe_interval_s
        )
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.readers = 0
        self.last_active = now
        self.content_keys: set[str] = set()
        self.hls: HlsWindow | None = None
        self._seed = int(hashlib.sha1(self.token.encode(), usedforsecurity=False).hexdigest(), 16)

    @property
    def bitrate_bps(self) -> int:
        return self.source.bitrate_bps

    def is_ready(self, now: float) -> bool:
        return now >= self.ready_at

    def touch(self, now: float) -> None:
        self.last_active = now

    def stat(self, now: float, wall: float, camel_case: bool) -> dict[str, object]:
        """The stat answer: counters that grow with time, faster once prebuffering is done."""
        ready = self.is_ready(now)
        rate = self.bitrate_bps / 8
        age = now - self.created_at
        prebuffering = min(age, self.ready_at - self.created_at)
        downloaded = rate * (0.5 * prebuffering + max(0.0, age - prebuffering))
        downloaded = int(downloaded) // PIECE_BYTES * PIECE_BYTES
        wobble = 1 + ((self._seed >> int(wall) % 64) % 11 - 5) / 100
        speed_down = int(rate / 1024 * (1.0 if ready else 0.5) * wobble)
        now_s = int(wall)
        speeds = {"speed_down": speed_down, "speed_up": int(speed_down * _UPLOAD_SHARE)}
        if camel_case:
            speeds = {"speedDown": speeds["speed_down"], "speedUp": speeds["speed_up"]}
        return {
            "status": "dl" if ready else "prebuf",
            "peers": 3 + self._seed % 9 + int(wall) // 7 % 3,
            **speeds,
            "downloaded": downloaded,
            "uploaded": int(downloaded * _UPLOAD_SHARE),
            "total_progress": 0,
            "is_live": 1,
            "infohash": self.infohash,
            "playback_session_id": self.playback_session_id,
            "livepos": {
                "pos": str(now_s - 30),
                "live_first": str(now_s - 3600),
                "live_last": str(now_s),
                "first_ts": str(now_s - 3600),
                "last_ts": str(now_s),
                "buffer_pieces": "30",
            },
        }


class SessionTable:
    """All live sessions, indexed the ways the engine's URLs and rules need, and the counters."""

    def __init__(self) -> None:
        self.counters = Counters()
        self._by_token: dict[str, Session] = {}
        self._by_infohash: dict[str, Session] = {}
        self._by_pid: dict[str, Session] = {}
        self._by_content_key: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def sessions(self) -> list[Session]:
        return list(self._by_token.values())

    def open(self, ref: ContentRef, pid: str, output: str, knobs: Knobs, now: float) -> Session:
        """The session for (content, pid): the running one, or a new one that supersedes others."""
        same_content = self._by_infohash.get(ref.infohash)
        if same_content is not None and same_content.pid == pid and same_content.output == output:
            return same_content
        for old in {id(s): s for s in (same_content, self._by_pid.get(pid)) if s}.values():
            if self._remove(old, "superseded"):
                self.counters.sessions_superseded += 1
        session = Session(ref, pid, output, knobs, now)
        self._by_token[session.token] = session
        self._by_infohash[session.infohash] = session
        self._by_pid[pid] = session
        self.counters.sessions_started += 1
        self.counters.max_concurrent_sessions = max(
            self.counters.max_concurrent_sessions, len(self._by_token)
        )
        return session

    def find(self, infohash: str, token: str) -> Session | None:
        session = self._by_token.get(token)
        return session if session is not None and session.infohash == infohash else None

    def by_token(self, token: str) -> Session | None:
        return self._by_token.get(token)

    def add_content_key(self, session: Session) -> str:
        key = secrets.token_hex(16)
        session.content_keys.add(key)
        self._by_content_key[key] = session
        return key

    def by_content_key(self, infohash: str, key: str) -> Session | None:
        session = self._by_content_key.get(key)
        return session if session is not None and session.infohash == infohash else None

    def stop(self, session: Session) -> None:
        """A stop command: the session ends and its URLs are forgotten."""
        if self._remove(session, "stopped"):
            self.counters.sessions_stopped += 1

    def end(self, session: Session, reason: str) -> None:
        """The broadcast died or nobody read the session: the engine ends it on its own."""
        if self._remove(session, reason):
            self.counters.sessions_ended += 1

    def close_all(self, reason: str) -> None:
        for session in self.sessions():
            self._remove(session, reason)

    def idle(self, now: float, timeout: float) -> list[Session]:
        """Sessions with no reader and no request for longer than `timeout`."""
        return [s for s in self.sessions() if s.readers == 0 and now - s.last_active > timeout]

    def reader_started(self, session: Session) -> None:
        session.readers += 1
        self.counters.readers_active += 1
        self.counters.max_concurrent_readers = max(
            self.counters.max_concurrent_readers, self.counters.readers_active
        )

    def reader_finished(self, session: Session, now: float) -> None:
        session.readers -= 1
        session.touch(now)
        self.counters.readers_active -= 1

    def reader_rejected(self) -> None:
        self.counters.readers_rejected += 1

    def snapshot(self, now: float) -> dict[str, object]:
        return {
            **asdict(self.counters),
            "sessions_active": len(self._by_token),
            "sessions": [
                {
                    "infohash": s.infohash,
                    "pid": s.pid,
                    "playback_session_id": s.playback_session_id,
                    "output": s.output,
                    "status": "dl" if s.is_ready(now) else "prebuf",
                    "readers": s.readers,
                }
                for s in self._by_token.values()
            ],
        }

    def reset_counters(self) -> None:
        """Start counting afresh; the maxima restart from what is active now."""
        active = self.counters.readers_active
        self.counters = Counters(
            readers_active=active,
            max_concurrent_sessions=len(self._by_token),
            max_concurrent_readers=active,
        )

    def _remove(self, session: Session, reason: str) -> bool:
        if self._by_token.pop(session.token, None) is None:
            return False
        for index in (self._by_infohash, self._by_pid):
            for key in [k for k, s in index.items() if s is session]:
                del index[key]
        for key in session.content_keys:
            self._by_content_key.pop(key, None)
        session.end_reason = reason
        session.ended.set()
        return True
