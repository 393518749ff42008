"""The command line: ``serve``, ``check-config`` and ``--version``.

A configuration error ends the process with one line per problem, naming the variable, and exit
status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from aiohttp import web
from pydantic import ValidationError

from . import __version__
from .app import create_app
from .eventloop import EventLoopUnavailable, loop_factory
from .fleet.docker import FleetError
from .fleet.vpn import VpnError
from .http.connections import ConnectionGuard, GuardedRunner
from .logs import configure_logging, get_logger
from .ops.lineup.summary import summarize
from .settings import Settings, describe_errors, load_settings

log = get_logger(__name__)

# Players' streams are ended first on shutdown, so open requests drain quickly; engine sessions
# are then stopped with their own timeout. The deadline bounds the whole shutdown.
_DRAIN_TIMEOUT_S = 5.0
_LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the gateway accepts them. Players come in crowds (a
playlist opened on every screen, everyone back after a restart): with aiohttp's 128, a crowd of
hundreds overflows the queue and the connections left out retry a second later, which a player
sees as a stream starting a second late. The kernel caps it at ``net.core.somaxconn``."""
_SHUTDOWN_DEADLINE_S = 20.0


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
        shown = settings.masked()
        if settings.channels_location is not None:
            shown["CHANNELS (effective)"] = asyncio.run(
                summarize(
                    settings.channels_location,
                    timeout_s=settings.channels_fetch_timeout_s,
                    guide=settings.guide_location,
                )
            )
        print(json.dumps(shown, indent=2, default=str))
        return
    serve(settings)


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly within a deadline."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        loop_name, new_loop = loop_factory(settings.event_loop)
    except EventLoopUnavailable as exc:
        print(f"acestream-gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info(
        "gateway_starting", version=__version__, port=settings.gateway_port, event_loop=loop_name
    )
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(_serve(settings))
    except OSError as exc:  # the listening socket: port taken, address not available
        log.error("gateway_cannot_listen", reason=str(exc))
        raise SystemExit(1) from None
    except FleetError as exc:  # found at start: a DOCKER_HOST the Docker client cannot use
        log.error("gateway_misconfigured", reason=exc.message)
        print(f"acestream-gateway: configuration error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    except VpnError as exc:  # found at start: a VPN container that cannot carry the engines
        log.error("gateway_misconfigured", reason=str(exc))
        print(f"acestream-gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        # Shutdown is done: a late signal must not turn a clean exit into a killed process.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    log.info("gateway_stopped")


async def _serve(settings: Settings) -> None:
    """Startup, run, shutdown: explicit phases, and only the first signal starts the shutdown."""
    guard = ConnectionGuard(
        header_timeout_s=settings.client_header_timeout_s,
        max_per_client=settings.max_connections_per_client,
        ipv6_prefix=settings.player_limit_ipv6_prefix,
    )
    runner = GuardedRunner(
        create_app(settings),
        guard,
        access_log=None,
        shutdown_timeout=_DRAIN_TIMEOUT_S,
        keepalive_timeout=settings.keepalive_timeout_s,
    )
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()  # what did start (the HTTP client session) is closed again
        raise
    try:
        site = web.TCPSite(
            runner, settings.gateway_host, settings.gateway_port, backlog=_LISTEN_BACKLOG
        )
        await site.start()
        log.info("gateway_listening", host=settings.gateway_host, port=settings.gateway_port)
        await _wait_for_signal()
    finally:
        log.info("gateway_stopping")
        try:
            async with asyncio.timeout(_SHUTDOWN_DEADLINE_S):
                await runner.cleanup()
        except TimeoutError:
            log.error("gateway_shutdown_deadline_passed", deadline_s=_SHUTDOWN_DEADLINE_S)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # A second signal must not tear the orderly shutdown apart half-way.
            log.warning("signal_ignored_during_shutdown", signal=signal.Signals(signum).name)
            return
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        for line in describe_errors(exc):
            print(f"acestream-gateway: configuration error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
