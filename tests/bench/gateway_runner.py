"""The gateway under benchmark, in a process of its own, fed by one engine emulator.

Its CPU time and memory must be the gateway's alone, so it cannot share a process with the
players or the benchmark driver. Like the local integration tests it runs without the fleet: the
pool holds one READY engine, the emulator on ``--engine-port``.

    python -m tests.bench.gateway_runner --port 8000 --engine-port 6878
"""

from __future__ import annotations

import argparse

from aiohttp import web

from acestream_gateway.app import create_app
from acestream_gateway.engines.model import Engine, EngineAddress, EngineState
from acestream_gateway.eventloop import loop_factory
from acestream_gateway.http.keys import POOL, SETTINGS
from acestream_gateway.logs import configure_logging
from acestream_gateway.settings import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gateway_runner")
    parser.add_argument("--port", type=int, required=True, help="where players connect")
    parser.add_argument("--engine-port", type=int, required=True, help="the emulator's port")
    parser.add_argument("--linger-s", type=float, default=1.0, help="STREAM_LINGER_S")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> web.Application:
    settings = Settings(  # the rest from the environment, as the product reads it
        gateway_host="127.0.0.1",
        gateway_port=args.port,
        stream_linger_s=args.linger_s,
        log_level=args.log_level,
        log_format="json",
    )
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, with_fleet=False)
    app[POOL].add(
        Engine(
            id="bench-emulator",
            name="bench-emulator",
            address=EngineAddress("127.0.0.1", args.engine_port),
            state=EngineState.READY,
        )
    )
    return app


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    app = build(args)
    # The product's loop choice (EVENT_LOOP, default auto: uvloop when installed).
    _, new_loop = loop_factory(app[SETTINGS].event_loop)
    web.run_app(
        app,
        loop=new_loop(),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
