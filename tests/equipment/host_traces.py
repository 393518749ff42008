"""What a Docker daemon the tests started may leave on the machine, found and removed.

A daemon stopped cleanly takes its containers, shims and mounts with it; one that died or was
killed leaves processes (containerd, shims, proxies, the containers' own), mounts under its
directories and cgroups under its parent. Each is recognised by a mark of the daemon's own: its
directory on a process's command line or in the mount table, its network namespace, its cgroup
parent. The machine's own daemon has none of these marks, so it is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def processes(root: Path, netns: Path, cgroup_parent: str) -> list[int]:
    """Pids of the processes that belong to a test daemon (never this test process)."""
    marks = (str(root),)
    netns_id = _inode(netns)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            in_netns = netns_id is not None and _inode(entry / "ns" / "net") == netns_id
            cgroups = (entry / "cgroup").read_text()
            if (
                any(m in cmdline for m in marks)
                or in_netns
                or f"/{cgroup_parent}/" in cgroups
                or cgroups.rstrip().endswith(f"/{cgroup_parent}")
            ):
                found.append(int(entry.name))
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def mounts_under(root: Path) -> list[str]:
    """Mount points under ``root`` in this process's mount table, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount(points: list[str]) -> None:
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)


def cgroups(parent: str) -> list[Path]:
    """The cgroup directories of ``parent`` (v1: one per controller; v2: one), deepest first."""
    tops = [CGROUP_ROOT / parent, *CGROUP_ROOT.glob(f"*/{parent}")]
    found = [d for top in tops if top.is_dir() for d in (top, *top.rglob("*")) if d.is_dir()]
    return sorted(found, key=lambda d: len(d.parts), reverse=True)


def remove_cgroups(parent: str) -> None:
    for directory in cgroups(parent):
        with contextlib.suppress(OSError):
            directory.rmdir()


def netfilter_mentions(words: list[str]) -> list[str]:
    """Lines of the machine's iptables rules that mention any of ``words``."""
    result = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, timeout=30, check=False
    )
    return [line for line in result.stdout.splitlines() if any(w in line for w in words)]


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None
