"""The session journal's file: what is written is read back, a write replaces the file in one
step, anything else found there is unreadable (never half-trusted), and STATE_DIR is checked at
start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.journal import (
    JournalEntry,
    JournalUnreadable,
    decode,
    encode,
    read_journal,
    write_atomically,
)
from acestream_gateway.engines.recovery import load_left_sessions
from acestream_gateway.settings import Settings
from tests.support import settings_errors

entries = st.lists(
    st.builds(
        JournalEntry,
        pid=st.text(min_size=1, max_size=32),
        host=st.sampled_from(["127.0.0.1", "::1", "engine.lan"]),
        port=st.integers(1, 65535),
        kind=st.sampled_from(["id", "infohash", "url", "magnet"]),
        value=st.text(max_size=60),
        file_indexes=st.sampled_from(["0", "1,2"]),
        command_url=st.none() | st.just("http://127.0.0.1:6878/ace/cmd/x"),
        attempts=st.integers(0, 3),
    ),
    max_size=5,
)


@given(entries)
def test_what_is_written_is_read_back(written: list[JournalEntry]) -> None:
    assert decode(encode(written), Path("j")) == written


@given(st.binary(max_size=300))
def test_anything_else_is_unreadable_or_a_journal(raw: bytes) -> None:
    try:
        read = decode(raw, Path("j"))
    except JournalUnreadable:
        return
    assert all(isinstance(entry, JournalEntry) for entry in read)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'{"format": 1, "sessions": [',
        b'{"format": 2, "sessions": []}',
        b'{"format": 1, "sessions": [{"pid": 3}]}',
        b'{"format": 1, "sessions": [{"pid": "p", "host": "h", "port": "80", "kind": "id",'
        b' "value": "v", "file_indexes": "0"}]}',
        b'{"format": 1, "sessions": [{"pid": "p", "host": "h", "port": 80, "kind": "torrent",'
        b' "value": "v", "file_indexes": "0"}]}',
        b"[" * 100_000,
    ],
)
def test_a_damaged_journal_is_unreadable(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "sessions-x.json"
    path.write_bytes(raw)
    with pytest.raises(JournalUnreadable):
        read_journal(path)
    left = load_left_sessions(path)
    assert not left.trusted
    assert not path.exists(), "set aside, so the next write does not hide what was wrong"
    assert (tmp_path / "sessions-x.json.corrupt").read_bytes() == raw


def test_no_journal_is_no_entries_and_not_trusted(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "none.json") is None
    assert not load_left_sessions(tmp_path / "none.json").trusted


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions-x.json"
    write_atomically(path, b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["sessions-x.json"]


def test_state_dir_must_be_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = settings_errors(monkeypatch, STATE_DIR="state")
    assert line.startswith("STATE_DIR: must be an absolute path")


def test_state_dir_defaults_to_the_users_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert Settings().state_dir == Path("/srv/state/acestream-gateway")


def test_a_write_is_synced_before_the_rename_and_the_rename_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a host crash must not lose: the new content reaches the disk before it takes the
    journal's name, and the directory holding the new name reaches it after."""
    path = tmp_path / "sessions-x.json"
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomically(path, b"{}")
    assert steps == ["file", "rename", "dir"]
    assert path.read_bytes() == b"{}"
