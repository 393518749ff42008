"""At start, before any channel can be placed: end the engine sessions a dead gateway left behind.

The session journal (:mod:`.journal`) lists them. Each is stopped through its ``command_url``; a
start whose answer never came is found again by its pid (asking the engine to start the same
content under the same pid returns the session it made, as the retirer does for a timed-out
start) and then stopped. What cannot be accounted for — no journal while there are engines to
adopt, a journal that cannot be read, a stop that failed, an engine that did not answer — makes
the engines concerned unusable (:class:`LeftSessions.accounts_for` says no): the fleet adopts
them out of selection and replaces them, so a session nobody reads never shares an engine with a
new channel (rule 2). See docs/RESILIENCE.md, "Sessions a dead gateway left behind".
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..logs import get_logger
from .client import EngineClient, EngineError, EngineRefused, EngineSession
from .journal import JournalEntry, JournalUnreadable, SessionJournal, read_journal
from .model import EngineAddress

log = get_logger(__name__)

_CONCURRENCY = 8


@dataclass(slots=True)
class LeftSessions:
    """What a start knows of the sessions the previous run left: ``trusted`` when the journal
    was read (or there was none to read yet, and no engine either), ``unaccounted`` the engines
    whose sessions could not all be ended."""

    entries: list[JournalEntry]
    trusted: bool
    unaccounted: set[EngineAddress] = field(default_factory=set)

    def accounts_for(self, address: EngineAddress) -> bool:
        """Whether an engine at ``address`` found at start can be trusted to carry no session the
        gateway does not know of."""
        return self.trusted and address not in self.unaccounted


def load_left_sessions(path: Path) -> LeftSessions:
    """The journal a previous run left at ``path`` (blocking file I/O: run it in a thread). A
    missing journal is not trusted (engines may exist that a run without one used); an unreadable
    one is set aside as ``<name>.corrupt`` and not trusted either."""
    try:
        entries = read_journal(path)
    except JournalUnreadable as exc:
        log.error("session_journal_unreadable", path=str(path), reason=str(exc))
        _set_aside(path)
        return LeftSessions([], trusted=False)
    if entries is None:
        log.info("session_journal_missing", path=str(path))
        return LeftSessions([], trusted=False)
    return LeftSessions(entries, trusted=True)


def _set_aside(path: Path) -> None:
    try:
        os.replace(path, path.with_name(path.name + ".corrupt"))
    except OSError as exc:
        log.warning("session_journal_not_set_aside", path=str(path), reason=str(exc))


async def end_left_sessions(
    left: LeftSessions, journal: SessionJournal, client: EngineClient, *, find_timeout_s: float
) -> None:
    """End every session ``left`` lists, concurrently (bounded); each ended one is forgotten by
    the journal, each other one makes its engine unaccounted and stays listed for the next start.
    """
    if not left.entries:
        return
    log.info("left_sessions_ending", sessions=len(left.entries))
    limit = asyncio.Semaphore(_CONCURRENCY)
    unresolved: list[JournalEntry] = []

    async def end(entry: JournalEntry) -> None:
        async with limit:
            if await _end(entry, client, find_timeout_s):
                journal.forget(entry.pid)
            else:
                unresolved.append(entry)
                left.unaccounted.add(entry.address)

    async with asyncio.TaskGroup() as group:
        for entry in left.entries:
            group.create_task(end(entry), name=f"end left session {entry.pid}")
    journal.keep_unresolved(unresolved)
    log.info(
        "left_sessions_ended",
        ended=len(left.entries) - len(unresolved),
        unresolved=len(unresolved),
        engines_unaccounted=sorted(f"{a.host}:{a.port}" for a in left.unaccounted),
    )


async def _end(entry: JournalEntry, client: EngineClient, find_timeout_s: float) -> bool:
    """Whether the session is over now: stopped, or unknown to its engine."""
    try:
        if entry.command_url is not None:
            await client.stop_session(_session(entry, entry.command_url))
        else:  # its start answer never came: find it by its pid, then stop it
            session = await client.start_session(
                entry.address, entry.content, entry.pid, timeout_s=find_timeout_s
            )
            await client.stop_session(session)
    except EngineRefused:
        return True  # the engine has no session of it (and made none now)
    except EngineError as exc:
        log.warning("left_session_not_ended", pid=entry.pid, port=entry.port, reason=exc.reason)
        return False
    except Exception:  # the guard of one session's recovery: the others go on
        log.exception("left_session_recovery_crashed", pid=entry.pid)
        return False
    log.info("left_session_ended", pid=entry.pid, port=entry.port)
    return True


def _session(entry: JournalEntry, command_url: str) -> EngineSession:
    """Enough of a session to stop it: its command URL (the rest is not needed to stop it)."""
    return EngineSession(
        address=entry.address,
        pid=entry.pid,
        playback_url="",
        stat_url="",
        command_url=command_url,
        infohash="",
        playback_session_id="",
        is_live=True,
    )
