"""The fan-out floor: ``cfanout``, built from the shared C source, serving the same players.

The gateway's CPU cost only means something next to the cheapest possible copy of one stream to
many sockets measured on the same machine in the same run; ``shared/bench/cfanout.c`` is that
yardstick. It lives next to the repository (``../shared``), not in it; ``BENCH_FLOOR_SOURCE``
names it elsewhere (a git worktree, say).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path("shared") / "bench" / "cfanout.c"


class FloorUnavailable(RuntimeError):
    """cfanout cannot be built here; the message says what is missing."""


def find_source(repo_root: Path) -> Path:
    """``cfanout.c``: ``BENCH_FLOOR_SOURCE``, else in the shared directory beside the repository."""
    named = os.environ.get("BENCH_FLOOR_SOURCE", "").strip()
    source = Path(named) if named else repo_root.resolve().parent / SOURCE
    if not source.is_file():
        raise FloorUnavailable(
            f"the fan-out floor's source is missing: expected {source} "
            f"(the shared/ directory next to the repository {repo_root.resolve()}, or "
            "BENCH_FLOOR_SOURCE)"
        )
    return source


def build(repo_root: Path, build_dir: Path) -> Path:
    """Compile cfanout with ``gcc -O2`` into ``build_dir``; the executable's path."""
    source = find_source(repo_root)
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FloorUnavailable("gcc is needed to build the fan-out floor (Debian package gcc)")
    binary = build_dir / "cfanout"
    result = subprocess.run(
        [gcc, "-O2", "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise FloorUnavailable(f"gcc failed to build {source}:\n{result.stderr.strip()}")
    return binary


def argv(binary: Path, listen_port: int, upstream_port: int, upstream_path: str) -> list[str]:
    return [str(binary), str(listen_port), str(upstream_port), upstream_path]
