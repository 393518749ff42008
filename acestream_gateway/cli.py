"""The command line: ``serve``, ``check-config`` and ``--version``.

A configuration error ends the process with one line per problem, naming the variable, and exit
status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from aiohttp import web
from pydantic import ValidationError

from . import __version__
from .app import create_app
from .logs import configure_logging, get_logger
from .settings import Settings, describe_errors, load_settings

log = get_logger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="acestream-gateway",
        description="Proxy AceStream channels to media players, running the engines in Docker.",
        epilog="Configuration comes from environment variables; see README.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gateway")
    commands.add_parser("check-config", help="print the effective configuration and exit")
    args = parser.parse_args(argv)
    settings = _settings_or_exit()
    if args.command == "check-config":
        print(json.dumps(settings.masked(), indent=2, default=str))
        return
    serve(settings)


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    configure_logging(settings.log_level, settings.log_format)
    log.info("gateway_starting", version=__version__, port=settings.gateway_port)
    web.run_app(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        print=None,
        shutdown_timeout=10.0,
        access_log=None,
        handle_signals=True,
    )
    log.info("gateway_stopped")


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        for line in describe_errors(exc):
            print(f"acestream-gateway: configuration error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
