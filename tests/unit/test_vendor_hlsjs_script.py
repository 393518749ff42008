"""scripts/vendor-hlsjs against a stand-in npm (no registry): it copies the package's browser
build, worker and licence only when the tarball matches the integrity hash the registry gives,
and records the version and the files' hashes."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support import ROOT

VERSION = "9.8.7"
FILES = {
    "package/package.json": f'{{\n  "name": "hls.js",\n  "version": "{VERSION}"\n}}\n'.encode(),
    "package/LICENSE": b"Apache License, Version 2.0\n",
    "package/dist/hls.min.js": b"/* hls.min.js */\n",
    "package/dist/hls.worker.js": b"/* hls.worker.js */\n",
    "package/dist/hls.js": b"/* not vendored */\n",
}

# Answers `npm view hls.js@V dist.integrity` and `npm pack --silent hls.js@V` from two files.
STUB_NPM = """#!/usr/bin/env bash
set -euo pipefail
case "$1" in
  view) cat "$STUB_DIR/integrity" ;;
  pack) cp "$STUB_DIR/hls.js.tgz" . && echo hls.js.tgz ;;
  *) exit 2 ;;
esac
"""


def tarball() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def run(tmp_path: Path, published: str) -> subprocess.CompletedProcess[str]:
    """The script in a copy of the repository's layout, npm being the stand-in."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "vendor-hlsjs", repo / "scripts")
    (repo / "README.md").write_text(f"hls.js {VERSION}\n")
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "npm").write_text(STUB_NPM)
    (stub / "npm").chmod(0o755)
    data = tarball()
    (stub / "hls.js.tgz").write_bytes(data)
    (stub / "integrity").write_text(published or integrity(data))
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "STUB_DIR": str(stub)}
    return subprocess.run(
        [str(repo / "scripts" / "vendor-hlsjs"), VERSION],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def vendor(tmp_path: Path) -> Path:
    return tmp_path / "repo" / "acestream_gateway" / "http" / "static" / "vendor"


def test_a_tarball_matching_the_registrys_hash_is_vendored_with_its_version(
    tmp_path: Path,
) -> None:
    done = run(tmp_path, published="")
    assert done.returncode == 0, done.stderr
    copied = vendor(tmp_path)
    assert sorted(p.name for p in copied.iterdir()) == [
        "LICENSE",
        "SHA256SUMS",
        "VERSION",
        "hls.min.js",
        "hls.worker.js",
    ]
    assert (copied / "VERSION").read_text() == f"{VERSION}\n"
    for name in ("hls.min.js", "hls.worker.js"):
        assert (copied / name).read_bytes() == FILES[f"package/dist/{name}"]
    assert (copied / "LICENSE").read_bytes() == FILES["package/LICENSE"]
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=copied, capture_output=True, check=False
    )
    assert check.returncode == 0


def test_a_tarball_that_differs_from_the_registrys_hash_is_refused(tmp_path: Path) -> None:
    done = run(tmp_path, published=integrity(b"something else"))
    assert done.returncode == 1
    assert "integrity mismatch" in done.stderr
    assert not vendor(tmp_path).exists()


@pytest.mark.parametrize("version", ["1.7", "latest", "^1.7.4"])
def test_only_an_exact_version_is_taken(version: str) -> None:
    script = ROOT / "scripts" / "vendor-hlsjs"
    done = subprocess.run(
        [str(script), version], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "exact version" in done.stderr
