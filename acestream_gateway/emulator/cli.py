"""The command line: the real engine's options, plus --emu-* knobs that EMULATOR_* variables mirror.

Engine options the emulator does not model are accepted and ignored, as a drop-in replacement for
the engine image must start with whatever command line the gateway gives the engine. Like the
engine, it reads arguments from ``@file`` (one argument a line, e.g. ``--http-port=6878``): some
engine images write their settings to such a file. Knob values come from the command line first,
then the environment, then the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Mapping, Sequence

from .config import (
    EngineOptions,
    KnobError,
    Knobs,
    env_name,
    flag_name,
    knob_fields,
)
from .server import Emulator

log = logging.getLogger(__name__)

DESCRIPTION = "AceStream engine emulator: the engine's HTTP API and its quirks, for tests."
EPILOG = (
    "Every --emu-* option can also be given as an environment variable: --emu-prebuffer-s "
    "is EMULATOR_PREBUFFER_S, and so on; the command line wins. Seconds accept 'never'; id lists "
    "are comma-separated. Knobs can be changed at run time with POST /emulator/control "
    '(a JSON object, e.g. {"stall_after_s": 0}, plus the actions "crash", "end_sessions", '
    '"reset_stats"); GET /emulator/stats reports counters and active sessions.'
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acestream-emulator",
        description=DESCRIPTION,
        epilog=EPILOG,
        allow_abbrev=False,
        fromfile_prefix_chars="@",
    )
    engine = parser.add_argument_group("engine options (as the real engine; others are ignored)")
    engine.add_argument("--client-console", action="store_true", help="run without a GUI")
    engine.add_argument("--http-port", type=int, default=6878, help="HTTP API port (6878)")
    engine.add_argument(
        "--bind-all", action="store_true", help="serve all clients, not just local subnets"
    )
    engine.add_argument("--port", type=int, default=8621, help="P2P port (accepted, unused)")
    engine.add_argument("--https-port", type=int, help="HTTPS API port (accepted, unused)")
    engine.add_argument("--live-cache-type", help="accepted, unused")
    engine.add_argument("--live-buffer", help="accepted, unused")
    emulator = parser.add_argument_group("emulator options")
    emulator.add_argument(
        "--emu-host", help="listen address (0.0.0.0; env EMULATOR_HOST)", default=None
    )
    emulator.add_argument(
        "--emu-control-port",
        type=int,
        default=None,
        help="also serve /emulator/* on this port, which 'refuse' leaves open "
        "(env EMULATOR_CONTROL_PORT; default: only the engine port)",
    )
    defaults = Knobs().as_json()
    for knob in knob_fields():
        emulator.add_argument(
            flag_name(knob.name),
            dest=knob.name,
            metavar="VALUE",
            default=None,
            help=f"{knob.metadata['help']} (env {env_name(knob.name)}; "
            f"default {_shown(defaults[knob.name])})",
        )
    return parser


def parse_args(
    argv: Sequence[str] | None, environ: Mapping[str, str]
) -> tuple[EngineOptions, Knobs, list[str]]:
    """Options, knobs and the ignored arguments; exits with a usage error on bad values."""
    parser = build_parser()
    args, ignored = parser.parse_known_args(argv)
    changes: dict[str, object] = {}
    for knob in knob_fields():
        value = getattr(args, knob.name)
        if value is None:
            value = environ.get(env_name(knob.name))
        if value is not None:
            changes[knob.name] = value
    try:
        knobs = Knobs().updated(changes)
        control_port = args.emu_control_port
        if control_port is None and environ.get("EMULATOR_CONTROL_PORT"):
            control_port = int(environ["EMULATOR_CONTROL_PORT"])
    except (KnobError, ValueError) as exc:
        parser.error(str(exc))
    options = EngineOptions(
        http_port=args.http_port,
        bind_all=args.bind_all,
        host=args.emu_host or environ.get("EMULATOR_HOST") or "0.0.0.0",
        control_port=control_port,
        crash_exits=True,
    )
    return options, knobs, ignored


async def serve(options: EngineOptions, knobs: Knobs) -> None:
    """Run until SIGTERM or SIGINT (the container's stop), then shut down promptly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    emulator = Emulator(options, knobs)
    await emulator.start()
    try:
        await stop.wait()
        log.info("engine_stopping reason=signal")
    finally:
        await emulator.close()


def run(argv: Sequence[str] | None = None) -> None:
    options, knobs, ignored = parse_args(argv, os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if ignored:
        log.info("ignored_engine_options %s", " ".join(ignored))
    try:
        asyncio.run(serve(options, knobs))
    except OSError as exc:
        log.error("engine_failed %s", exc)
        raise SystemExit(1) from exc


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "none"
    return str(value)
