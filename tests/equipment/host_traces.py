"""What a Docker daemon the tests started may leave on the machine, found and removed.

A daemon stopped cleanly takes its containers, shims and mounts with it; one that died or was
killed leaves processes (containerd, shims, proxies, the containers' own), mounts under its
directories and cgroups under its parent. Each is recognised by a mark of the daemon's own: its
directory on a process's command line or in the mount table, its network namespace, its cgroup
parent. The machine's own daemon has none of these marks, so it is never touched.

A run that is killed (a CI timeout, a developer's Ctrl-C twice) cannot clean up: each daemon's
directory names the process that owns it (pid and start time, ``owner``), and the next start
erases the equipment of every owner that is gone (:func:`sweep_abandoned`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path

from tests.equipment.netns import NETNS_DIR, delete_namespace

CGROUP_ROOT = Path("/sys/fs/cgroup")
OWNER = "owner"
BLOCK = "network"
ROOT_NAME = re.compile(r"^(agw[0-9a-f]{8})-")
# A directory whose owner is not written yet is someone's start in progress, unless it is old.
_UNCLAIMED_GRACE_S = 600
# Room for the images a test daemon is given (the emulator's is about 160 MB) and its containers.
_SCRATCH_SIZE = "4g"


def erase(name: str, root: Path) -> None:
    """Removes every trace of the test daemon ``name`` whose directory is ``root``."""
    block = _recorded_block(root)
    pids = processes(root, NETNS_DIR / name, name)
    kill(pids)
    wait_gone(pids, timeout_s=20)
    unmount(mounts_under(root))
    remove_cgroups(name)
    delete_namespace(name, block)
    shutil.rmtree(root, ignore_errors=True)


def record_block(root: Path, block: IPv4Network) -> None:
    """Notes the network block of the daemon's namespace (its route is removed with it)."""
    (root / BLOCK).write_text(f"{block}\n")


def _recorded_block(root: Path) -> IPv4Network | None:
    try:
        return IPv4Network((root / BLOCK).read_text().strip())
    except (OSError, ValueError):
        return None


def claim(root: Path) -> None:
    """Marks ``root`` as this process's equipment."""
    (root / OWNER).write_text(_identity(os.getpid()) or "")


def sweep_abandoned(directory: Path) -> list[str]:
    """Erases the daemons under ``directory`` whose owner process is gone; their names."""
    swept = []
    for root in directory.iterdir():
        match = ROOT_NAME.match(root.name)
        if match and root.is_dir() and _abandoned(root):
            erase(match.group(1), root)
            swept.append(match.group(1))
    return swept


def _abandoned(root: Path) -> bool:
    try:
        owner = (root / OWNER).read_text().split()
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return time.time() - root.stat().st_mtime > _UNCLAIMED_GRACE_S
        return False
    return not owner or _identity(int(owner[0])) != " ".join(owner)


def _identity(pid: int) -> str | None:
    """``"<pid> <start time>"``: tells a live owner from a later process with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rpartition(')')[2].split()[19]}"


def wait_gone(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(Path(f"/proc/{pid}")) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _alive(proc: Path) -> bool:
    """A process that still runs (a zombie holds nothing but its pid)."""
    try:
        return (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def processes(root: Path, netns: Path, cgroup_parent: str) -> list[int]:
    """Pids of the processes that belong to a test daemon (never this test process)."""
    marks = (str(root),)
    netns_id = _inode(netns)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not _alive(entry):
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


def mount_scratch(root: Path) -> None:
    """A tmpfs on ``root`` for a daemon's files (Docker's overlay2 runs on tmpfs)."""
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={_SCRATCH_SIZE},mode=0700", "tmpfs", str(root)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip


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
