"""Every process a benchmark starts, each in its own process group, all stopped on the way out.

A benchmark that dies half-way (Ctrl-C, a failed phase) must not leave a gateway or a thousand
player sockets behind: processes are pinned to a core, get SIGKILL if this process dies (Linux
parent-death signal), and :meth:`Processes.close` stops every group, newest first.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


class Processes:
    """Owner of the benchmark's child processes; logs go to ``workdir/<name>.log``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._running: list[subprocess.Popen[bytes]] = []
        self._libc = ctypes.CDLL(None, use_errno=True)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pipes: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` pinned to ``core``; with ``pipes`` we talk to it on stdin/stdout."""
        log = (self.workdir / f"{name}.log").open("ab")
        stdio: IO[bytes] | int = subprocess.PIPE if pipes else log
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=stdio,
                stderr=log,
                start_new_session=True,  # its own group: Ctrl-C reaches only us, we stop it
                preexec_fn=self._child_setup(core),  # safe: we start no threads
            )
        finally:
            log.close()
        self._running.append(proc)
        return proc

    def _child_setup(self, core: int | None) -> Callable[[], None]:
        prctl = self._libc.prctl

        def setup() -> None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if core is not None:
                os.sched_setaffinity(0, {core})

        return setup

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 8.0) -> None:
        """SIGTERM to the process group, SIGKILL if it outlives ``timeout_s``."""
        if proc in self._running:
            self._running.remove(proc)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        _signal_group(proc.pid, signal.SIGKILL)  # whatever it left in its group
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Stop everything still running, newest first."""
        while self._running:
            self.stop(self._running[-1])


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
