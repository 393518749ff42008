"""``make bench``: run the benchmark plan, then write the JSON figures, the Markdown page and a
summary. Options exist to try a shorter plan by hand; ``make bench`` uses the defaults.

    python -m tests.bench [--players 50,200,500] [--window-s 10]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from . import procfs, report, scenario
from .engine import Stream
from .floor import FloorUnavailable


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--players", default="50,200,500", help="player counts, comma-separated")
    parser.add_argument("--bitrate-bps", type=int, default=4_000_000, help="stream bitrate")
    parser.add_argument("--burst-bytes", type=int, default=4_000_000, help="engine's first burst")
    parser.add_argument("--window-s", type=float, default=10.0, help="steady-state window")
    parser.add_argument("--joins", type=int, default=9, help="timed joins per phase")
    parser.add_argument("--server-core", type=int, default=0, help="core of gateway/cfanout")
    parser.add_argument("--load-core", type=int, default=1, help="core of players/emulator")
    parser.add_argument("--out", type=Path, default=scenario.ROOT / "bench-results" / "latest.json")
    parser.add_argument("--doc", type=Path, default=scenario.ROOT / "docs" / "BENCHMARKS.md")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> scenario.Plan:
    return scenario.Plan(
        player_counts=tuple(int(n) for n in args.players.split(",") if n.strip()),
        stream=Stream(bitrate_bps=args.bitrate_bps, burst_bytes=args.burst_bytes, prebuffer_s=1.0),
        window_s=args.window_s,
        settle_max_s=30.0,
        joins=args.joins,
        join_gap_s=0.23,  # not a multiple of the stream's 100 ms blocks: joins land all over them
        server_core=args.server_core,
        load_core=args.load_core,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind through every ``finally``: the children get stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    missing = {plan.server_core, plan.load_core} - os.sched_getaffinity(0)
    if missing or plan.server_core == plan.load_core:
        print(
            f"bench: needs two distinct CPUs for --server-core and --load-core; this process may "
            f"use CPUs {sorted(os.sched_getaffinity(0))}",
            file=sys.stderr,
        )
        return 2
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    machine = procfs.machine()  # before the driver pins itself to one core
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    workdir = args.out.parent / "work"  # logs and the cfanout build, kept for a post-mortem
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        figures = scenario.run(plan, workdir)
    except FloorUnavailable as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # a phase failed: say which, and where its logs are
        print(f"bench: failed: {exc}\nbench: process logs in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    results = report.assemble(
        plan, figures, date=date, duration_s=time.monotonic() - started, machine=machine
    )
    report.write(results, json_path=args.out, doc_path=args.doc)
    print(report.summary(results))
    print(f"\nraw figures: {args.out}\npage: {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
