"""CPU time and memory of a running process, read from /proc, plus what machine this is.

The figures a benchmark compares must come from the kernel's own accounting, not from the
process under test: ``schedstat`` gives on-CPU time in nanoseconds (summed over threads), ``stat``
gives the user/system split in clock ticks, ``status`` gives resident memory.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative CPU time of one process at one moment."""

    at: float  # time.monotonic() when read
    user_s: float
    sys_s: float
    run_s: float  # on-CPU time of all live threads (schedstat), finer than user + sys

    def since(self, earlier: CpuSample) -> CpuSpent:
        return CpuSpent(
            wall_s=self.at - earlier.at,
            user_s=self.user_s - earlier.user_s,
            sys_s=self.sys_s - earlier.sys_s,
            run_s=self.run_s - earlier.run_s,
        )


@dataclass(frozen=True, slots=True)
class CpuSpent:
    """CPU a process used over a window of wall-clock time."""

    wall_s: float
    user_s: float
    sys_s: float
    run_s: float

    @property
    def core_share(self) -> float:
        """Fraction of one core the process kept busy."""
        return self.run_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Memory:
    rss_kib: int
    peak_rss_kib: int  # VmHWM: the most it was ever resident


def cpu(pid: int) -> CpuSample:
    at = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # field 3 (state) onwards; comm may hold spaces
    return CpuSample(
        at=at,
        user_s=int(fields[11]) * _TICK_S,
        sys_s=int(fields[12]) * _TICK_S,
        run_s=_run_ns(pid) / 1e9,
    )


def _run_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended between listing and reading
    return total


def memory(pid: int) -> Memory:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return Memory(rss_kib=values["VmRSS"], peak_rss_kib=values["VmHWM"])


def reset_peak(pid: int) -> None:
    """Start VmHWM afresh at the current RSS, so a later peak belongs to what happened since."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
