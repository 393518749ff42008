"""The driver's handle on the load generator process: one JSON command out, one answer back.

Reads are bounded by a deadline (``select`` on the pipe), so a wedged load generator fails the
phase with a clear error instead of hanging the benchmark.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any


class PlayersFailed(RuntimeError):
    """The load generator died, did not answer in time, or answered nonsense."""


def argv() -> list[str]:
    return [sys.executable, "-m", "tests.bench.players"]


class Players:
    """Commands to a running ``tests.bench.players`` process (see that module)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self._proc = proc
        self._stdin = proc.stdin
        self._fd = proc.stdout.fileno()
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self._proc.pid

    def open(self, port: int, path: str, count: int, stalled: int = 0) -> dict[str, Any]:
        command = {"cmd": "open", "port": port, "path": path, "count": count, "stalled": stalled}
        return self._ask(command, 60)

    def open_at_once(self, port: int, path: str, count: int, wait_s: float) -> dict[str, Any]:
        """``count`` players at the same instant, each timed to its first 64 KiB."""
        command = {"cmd": "open", "port": port, "path": path, "count": count}
        return self._ask({**command, "at_once": True, "wait_s": wait_s}, wait_s + 60)

    def counts(self) -> dict[str, Any]:
        return self._ask({"cmd": "counts"}, 10)

    def joins(self, port: int, path: str, count: int, gap_s: float) -> list[dict[str, Any]]:
        answer = self._ask(
            {"cmd": "joins", "port": port, "path": path, "count": count, "gap_s": gap_s},
            count * (gap_s + 11) + 5,
        )
        joins: list[dict[str, Any]] = answer["joins"]
        return joins

    def close(self) -> dict[str, Any]:
        return self._ask({"cmd": "close"}, 20)

    def _ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            self._stdin.write(json.dumps(command).encode() + b"\n")
            self._stdin.flush()
        except BrokenPipeError:
            raise PlayersFailed("the load generator is gone") from None
        answer: dict[str, Any] = json.loads(self._line(time.monotonic() + timeout_s))
        if "error" in answer:
            raise PlayersFailed(f"the load generator refused {command['cmd']}: {answer['error']}")
        return answer

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PlayersFailed("the load generator did not answer in time")
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                data = os.read(self._fd, 1 << 20)
                if not data:
                    raise PlayersFailed(f"the load generator exited ({self._proc.poll()})")
                self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line
