"""``make bench``: run the benchmark phases (the fan-out, then failover), then write the JSON
figures, the Markdown page and a summary. Options exist to try a shorter plan by hand, or one
phase alone; ``make bench`` uses the defaults.

    python -m tests.bench [--only fanout|failover] [--shapes blocks,pieces]
                          [--players 50,200,500,1000] [--channels 1,10,50] [--no-large]
                          [--extras burst,isolation,memory] [--window-s 10] [--failover-runs 10]
                          [--rounds 3] [--rounds-other 1]
    python -m tests.bench --endurance

The failover phase needs Docker and the engine emulator image (``EMULATOR_IMAGE``, which
``make bench`` sets). ``--endurance`` runs only the long endurance runs instead (rapid zapping,
a 10-minute channel churn soak; see ``tests/integration/test_endurance_local.py``), pass or fail.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from tests.support import docker_answers

from . import failover, procfs, report, report_fanout, scenario
from .cases import SHAPES, default_cases
from .engine import Stream
from .floor import FloorUnavailable

PHASES = ("fanout", "failover")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--shapes", default="blocks,pieces", help="upstream shapes")
    parser.add_argument("--players", default="50,200,500,1000", help="players on one channel")
    parser.add_argument("--channels", default="1,10,50", help="channels of 10 players each")
    parser.add_argument("--no-large", action="store_true", help="skip 1,000 x 8 Mbit/s")
    parser.add_argument("--extras", default=",".join(scenario.EXTRAS), help="gateway-only phases")
    parser.add_argument("--bitrate-bps", type=int, default=4_000_000, help="failover bitrate")
    parser.add_argument("--burst-bytes", type=int, default=4_000_000, help="engine's first burst")
    parser.add_argument("--window-s", type=float, default=10.0, help="steady-state window")
    parser.add_argument("--rounds", type=int, default=3, help="pairs per case with a target")
    parser.add_argument("--rounds-other", type=int, default=1, help="pairs per other case")
    parser.add_argument("--joins", type=int, default=30, help="timed joins per gateway case")
    parser.add_argument("--floor-joins", type=int, default=5, help="timed joins per floor case")
    parser.add_argument("--burst-players", type=int, default=500, help="players of the burst")
    parser.add_argument("--memory-players", type=int, default=1000, help="players per cycle")
    parser.add_argument("--memory-cycles", type=int, default=10, help="join/leave cycles")
    parser.add_argument(
        "--memory-warmup", type=int, default=3, help="join/leave cycles before those measured"
    )
    parser.add_argument("--server-core", type=int, default=0, help="core of gateway/cfanout")
    parser.add_argument("--load-core", type=int, default=1, help="core of players/emulator")
    parser.add_argument("--failover-runs", type=int, default=10, help="engine kills")
    parser.add_argument("--failover-players", type=int, default=3, help="players on the channel")
    parser.add_argument(
        "--failover-prebuffer-s", type=float, default=1.0, help="engines' prebuffer (failover)"
    )
    parser.add_argument("--keyframe-interval-s", type=float, default=2.0, help="failover stream")
    parser.add_argument("--health-interval-s", type=float, default=1.0, help="failover gateway")
    parser.add_argument(
        "--endurance", action="store_true", help="only the long zapping and churn soak runs"
    )
    parser.add_argument("--only", choices=PHASES, help="run one phase, keep the other's figures")
    parser.add_argument("--out", type=Path, default=scenario.ROOT / "bench-results" / "latest.json")
    parser.add_argument("--doc", type=Path, default=scenario.ROOT / "docs" / "BENCHMARKS.md")
    return parser.parse_args(argv)


def failover_plan_from(args: argparse.Namespace, image: str) -> failover.FailoverPlan:
    return failover.FailoverPlan(
        runs=args.failover_runs,
        players=args.failover_players,
        stream=Stream(
            bitrate_bps=args.bitrate_bps,
            burst_bytes=args.burst_bytes,
            prebuffer_s=args.failover_prebuffer_s,
        ),
        keyframe_interval_s=args.keyframe_interval_s,
        health_check_interval_s=args.health_interval_s,
        image=image,
    )


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(",") if n.strip())


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def plan_from(args: argparse.Namespace) -> scenario.Plan:
    cases = default_cases(
        shapes=_words(args.shapes),
        players=_ints(args.players),
        channels=_ints(args.channels),
        large=not args.no_large,
    )
    return scenario.Plan(
        cases=tuple(cases),
        burst_bytes=args.burst_bytes,
        prebuffer_s=1.0,
        window_s=args.window_s,
        settle_max_s=30.0,
        joins=args.joins,
        floor_joins=args.floor_joins,
        join_gap_s=0.23,  # not a multiple of the stream's blocks: joins land all over them
        server_core=args.server_core,
        load_core=args.load_core,
        extras=_words(args.extras),
        burst_players=args.burst_players,
        memory_players=args.memory_players,
        memory_cycles=args.memory_cycles,
        memory_warmup=args.memory_warmup,
        rounds=args.rounds,
        rounds_other=args.rounds_other,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind through every ``finally``: the children get stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.endurance:
        return _endurance()
    phases = [args.only] if args.only else list(PHASES)
    problem = _equipment_problem(args, phases)
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    # Also when started in the background, where SIGINT arrives ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    machine = procfs.machine()  # before the driver pins itself to one core
    cpus = os.sched_getaffinity(0)
    command = _command(argv)
    workdir = args.out.parent / "work"  # logs and the cfanout build, kept for a post-mortem
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "fanout": lambda: _fanout(args, workdir, command, machine),
        "failover": lambda: _failover(args, workdir, command, machine),
    }
    measured: dict[str, Any] = {}
    try:
        for name in phases:
            os.sched_setaffinity(0, cpus)  # a phase may pin the driver: each starts unpinned
            measured[name] = runners[name]()
    except FloorUnavailable as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # a phase failed: say which, and where its logs are
        print(f"bench: failed: {exc}\nbench: process logs in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    results = {**report.load(args.out), **measured}
    kept = report.kept_sections(args.doc)
    report.write(results, measured=phases, kept=kept, json_path=args.out, doc_path=args.doc)
    print(report.summary(results, phases))
    print(f"\nraw figures: {args.out}\npage: {args.doc}")
    return 0


def _endurance() -> int:
    """The endurance tests at their long length (about 15 minutes), with their figures shown."""
    test = scenario.ROOT / "tests" / "integration" / "test_endurance_local.py"
    command = [sys.executable, "-m", "pytest", "-W", "error", "-s", "--timeout", "3600", str(test)]
    env = {**os.environ, "ENDURANCE": "long"}
    return subprocess.run(command, cwd=scenario.ROOT, env=env, check=False).returncode


def _equipment_problem(args: argparse.Namespace, phases: list[str]) -> str | None:
    if "fanout" in phases:
        unknown = set(_words(args.shapes)) - set(SHAPES) or set(_words(args.extras)) - set(
            scenario.EXTRAS
        )
        if unknown:
            return f"unknown shapes or extras: {sorted(unknown)}"
        missing = {args.server_core, args.load_core} - os.sched_getaffinity(0)
        if missing or args.server_core == args.load_core:
            return (
                "the fan-out needs two distinct CPUs for --server-core and --load-core; this "
                f"process may use CPUs {sorted(os.sched_getaffinity(0))}"
            )
    if "failover" in phases:
        if not os.environ.get("EMULATOR_IMAGE", "").strip():
            return "the failover phase needs EMULATOR_IMAGE (make bench sets it)"
        if not docker_answers():
            return "the failover phase needs a running Docker engine (scripts/ensure-docker)"
    return None


def _command(argv: list[str] | None) -> str:
    """The command that reproduces this run (make sets ``MAKELEVEL`` in its recipes)."""
    words = sys.argv[1:] if argv is None else argv
    if os.environ.get("MAKELEVEL"):
        return f"make bench BENCH_ARGS={shlex.quote(shlex.join(words))}" if words else "make bench"
    return f"python -m tests.bench {shlex.join(words)}".strip()


def _fanout(
    args: argparse.Namespace, workdir: Path, command: str, machine: dict[str, object]
) -> dict[str, Any]:
    plan = plan_from(args)
    started, date = time.monotonic(), _now()
    figures = scenario.run(plan, workdir)
    return report_fanout.assemble(
        plan,
        figures,
        date=date,
        command=command,
        duration_s=time.monotonic() - started,
        machine=machine,
    )


def _failover(
    args: argparse.Namespace, workdir: Path, command: str, machine: dict[str, object]
) -> dict[str, Any]:
    plan = failover_plan_from(args, os.environ["EMULATOR_IMAGE"].strip())
    started, date = time.monotonic(), _now()
    figures = failover.run(plan, workdir)
    return report.assemble_failover(
        plan,
        figures,
        date=date,
        command=command,
        duration_s=time.monotonic() - started,
        machine=machine,
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    sys.exit(main())
