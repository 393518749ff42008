"""The hls.js the watch page plays with: the files scripts/vendor-hlsjs copied from the npm
package, unchanged, of the version the README names, and shipped in the package's wheel."""

from __future__ import annotations

import hashlib
import re
import tomllib

from tests.support import ROOT

PACKAGE = ROOT / "acestream_gateway"
VENDOR = PACKAGE / "http" / "static" / "vendor"


def vendored_version() -> str:
    return (VENDOR / "VERSION").read_text().strip()


def test_the_vendored_files_are_the_ones_the_script_copied() -> None:
    sums = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    assert set(sums) == {"hls.min.js", "hls.worker.js", "LICENSE"}
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_the_pinned_version_is_exact_declared_by_the_build_and_named_in_the_readme() -> None:
    version = vendored_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f'"{version}"' in (VENDOR / "hls.min.js").read_text()
    assert f"hls.js {version}" in (ROOT / "README.md").read_text()
    assert "Apache License" in (VENDOR / "LICENSE").read_text()


def test_the_package_data_ships_every_static_file() -> None:
    # Globbed as setuptools globs package data: a pattern's `*` stays within one directory.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["acestream_gateway"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern) if path.is_file()}
    static = {path for path in (PACKAGE / "http" / "static").rglob("*") if path.is_file()}
    assert static - shipped == set()
