"""A few seconds of the fan-out benchmark, so its harness cannot rot: a handful of players on
cfanout and on the gateway, one case, and figures that make sense. Not a speed test: the
targets are checked by ``make bench``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.floor import FloorUnavailable, find_source
from tests.support import ROOT, need


def _floor_or_skip() -> None:
    need(shutil.which("gcc") is not None, "gcc (Debian package gcc), to build the fan-out floor")
    need(len(os.sched_getaffinity(0)) >= 2, "two CPUs (the bench pins server and load apart)")
    try:
        find_source(ROOT)
    except FloorUnavailable as exc:
        # The floor's C source is the workplace's yardstick beside the repository, not part of
        # it: a checkout without it cannot compare, which says nothing about the gateway.
        pytest.skip(str(exc))


def test_a_short_benchmark_runs_and_its_figures_make_sense(tmp_path: Path) -> None:
    _floor_or_skip()
    cpus = sorted(os.sched_getaffinity(0))
    out, doc = tmp_path / "latest.json", tmp_path / "BENCHMARKS.md"
    args = [
        *("--only", "fanout", "--shapes", "pieces", "--players", "5", "--channels", ""),
        *("--no-large", "--extras", "", "--window-s", "1.5", "--joins", "3"),
        *("--floor-joins", "1", "--rounds-other", "2"),
        *("--server-core", str(cpus[0]), "--load-core", str(cpus[1])),
        *("--out", str(out), "--doc", str(doc)),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fanout = json.loads(out.read_text())["fanout"]
    (case,) = fanout["comparison"]
    assert case["total_players"] == 5
    assert 0.8 < case["gateway_delivered_share"] < 1.2
    assert 0.8 < case["cfanout_delivered_share"] < 1.2
    assert case["ratio"] is not None
    assert case["rounds"] == 2
    assert case["gateway_out_of_sync"] == 0  # every player's TS kept its sync bytes
    assert 0 < case["ratio_min"] <= case["ratio"] <= case["ratio_max"]
    joins = fanout["joins"]
    assert joins["ok"] == 3 * 2  # per gateway phase: one a round
    assert joins["starts_with_pat"] == 3 * 2
    page = doc.read_text()
    assert "gateway / cfanout" in page
    assert "bench-fanout-cost.png" in page
    assert (tmp_path / "bench-fanout-cost.png").stat().st_size > 0
