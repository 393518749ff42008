"""The session journal: the engine sessions this gateway may have open, in a file that outlives it.

The engine's API has no call that lists its sessions, and an engine ends a session nobody reads
only after its own idle timeout. A gateway that dies (SIGKILL, out of memory, a host reboot of
the gateway's container alone) leaves its sessions live on engines that look empty to the next
start. So every session is written down before its start request goes out (engine address,
content, the pid it is started under) and again once its ``command_url`` is known, and crossed
out once it is over; the next start ends what is listed (:mod:`.recovery`) before any channel can
be placed. See docs/RESILIENCE.md, "Sessions a dead gateway left behind".

The file is small JSON, replaced atomically (written to a temporary file beside it, then renamed
over it), by one writer task that coalesces changes: a start waits for the write that includes its
entry (write-ahead), so a crash right after the request went out still finds it; other changes do
not wait. A write that fails is logged and the gateway goes on: playing beats journaling.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..logs import get_logger
from .model import ContentRef, EngineAddress, InputKind

log = get_logger(__name__)

_FORMAT = 1
# A session the gateway could not end at a start is tried again at the next few starts, then
# forgotten (its engine was drained and replaced meanwhile, or it is gone).
MAX_RECOVERY_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One engine session the gateway started (or was about to)."""

    pid: str
    host: str
    port: int
    kind: str
    value: str
    file_indexes: str
    command_url: str | None = None
    attempts: int = 0  # starts that tried to end it and could not

    @property
    def address(self) -> EngineAddress:
        return EngineAddress(self.host, self.port)

    @property
    def content(self) -> ContentRef:
        return ContentRef(InputKind(self.kind), self.value, self.file_indexes)

    @classmethod
    def of(cls, address: EngineAddress, content: ContentRef, pid: str) -> JournalEntry:
        return cls(
            pid=pid,
            host=address.host,
            port=address.port,
            kind=content.kind.value,
            value=content.value,
            file_indexes=content.file_indexes,
        )


class JournalUnreadable(Exception):
    """The journal file exists but cannot be read or understood."""


def journal_path(state_dir: Path, instance: str) -> Path:
    """Where the journal of gateway instance ``instance`` lives (one file per instance, so two
    gateways sharing a state directory keep apart)."""
    return state_dir / f"sessions-{instance}.json"


def read_journal(path: Path) -> list[JournalEntry] | None:
    """The entries of the journal at ``path``, or None when there is no journal file; raises
    :class:`JournalUnreadable` when there is one that cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalUnreadable(f"{path}: {exc.strerror or exc}") from None
    return decode(raw, path)


def decode(raw: bytes, path: Path) -> list[JournalEntry]:
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("format") != _FORMAT:
            raise ValueError("not a session journal of this version")
        entries = [JournalEntry(**item) for item in body["sessions"]]
        for entry in entries:
            _check(entry)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise JournalUnreadable(f"{path}: {exc}") from None
    return entries


def _check(entry: JournalEntry) -> None:
    fields = (entry.pid, entry.host, entry.kind, entry.value, entry.file_indexes)
    if not all(isinstance(f, str) for f in fields) or not isinstance(entry.port, int):
        raise ValueError(f"a malformed entry: {entry!r}")
    if entry.command_url is not None and not isinstance(entry.command_url, str):
        raise ValueError(f"a malformed command_url: {entry!r}")
    if not isinstance(entry.attempts, int):
        raise ValueError(f"a malformed attempt count: {entry!r}")
    InputKind(entry.kind)  # raises ValueError for an unknown kind


def encode(entries: list[JournalEntry]) -> bytes:
    body: dict[str, Any] = {"format": _FORMAT, "sessions": [asdict(e) for e in entries]}
    return json.dumps(body, indent=1).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: a reader (or the next start, after a crash at
    any moment, the host's included) sees the old file or the new one, never a part of one.

    The data is synced before the rename and the directory after it: without the first, a host
    that loses power may keep the new name with empty content; without the second, the rename
    itself may be lost, and a start written down would be forgotten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per write: a write cut off by cancellation may still run in its thread
    # while the next one starts.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with temp.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
        _sync_directory(path.parent)
    finally:
        temp.unlink(missing_ok=True)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the system allows a directory to be synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the data itself is synced
        pass
    finally:
        os.close(fd)


class SessionJournal:
    """The live journal: entries in memory, written to ``path`` by :meth:`run` (one owned task)."""

    def __init__(self, path: Path, entries: list[JournalEntry] | None = None) -> None:
        self.path = path
        self._entries: dict[str, JournalEntry] = {e.pid: e for e in entries or ()}
        self._changes = 0  # bumped on every change
        self._written = -1  # the change count the file holds (-1: not written yet)
        self._wake = asyncio.Event()
        self._written_event = asyncio.Event()
        self._failing = False
        self._wake.set()  # the file is written once at start, even when nothing changes

    def entries(self) -> list[JournalEntry]:
        return list(self._entries.values())

    async def starting(self, address: EngineAddress, content: ContentRef, pid: str) -> None:
        """Write down a session about to be started; returns once a write including it is done
        (or failed, which is logged)."""
        self._entries[pid] = JournalEntry.of(address, content, pid)
        await self._durable(self._changed())

    def started(self, pid: str, command_url: str) -> None:
        """The session's start answer came: how to stop it (written soon; until then it is found
        again by its pid)."""
        entry = self._entries.get(pid)
        if entry is not None and entry.command_url != command_url:
            self._entries[pid] = _replace(entry, command_url=command_url)
            self._changed()

    def forget(self, pid: str) -> None:
        """The session is over (stopped, refused, or gone with its engine)."""
        if self._entries.pop(pid, None) is not None:
            self._changed()

    def keep_unresolved(self, entries: list[JournalEntry]) -> None:
        """At start: sessions that could not be ended stay listed, one attempt more, for the next
        start (forgotten after ``MAX_RECOVERY_ATTEMPTS``)."""
        self._entries = {}
        for entry in entries:
            if entry.attempts + 1 < MAX_RECOVERY_ATTEMPTS:
                self._entries[entry.pid] = _replace(entry, attempts=entry.attempts + 1)
            else:
                log.warning("session_journal_entry_dropped", pid=entry.pid, engine_port=entry.port)
        self._changed()

    async def run(self) -> None:
        """Write the file whenever it changed, one write at a time, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            changes = self._changes
            data = encode(self.entries())
            try:
                await asyncio.to_thread(write_atomically, self.path, data)
            except OSError as exc:
                if not self._failing:
                    log.error("session_journal_write_failed", path=str(self.path), reason=str(exc))
                self._failing = True
            else:
                if self._failing:
                    log.info("session_journal_writes_again", path=str(self.path))
                self._failing = False
            self._written = changes
            self._written_event.set()
            self._written_event = asyncio.Event()

    async def flush(self) -> None:
        """Wait until the file holds every change made so far (for tests and shutdown)."""
        await self._durable(self._changes)

    async def close(self) -> None:
        """The last write, done in place (the writer task is gone by now)."""
        try:
            await asyncio.to_thread(write_atomically, self.path, encode(self.entries()))
        except OSError as exc:
            log.error("session_journal_write_failed", path=str(self.path), reason=str(exc))

    def _changed(self) -> int:
        self._changes += 1
        self._wake.set()
        return self._changes

    async def _durable(self, changes: int) -> None:
        while self._written < changes:
            await self._written_event.wait()


def _replace(entry: JournalEntry, **changes: Any) -> JournalEntry:
    return JournalEntry(**{**asdict(entry), **changes})
