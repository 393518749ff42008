"""Structured logging, configured once at start: JSON lines for machines, readable lines for people.

Events are snake_case facts (``engine_started``, ``player_dropped``) with ids bound through
contextvars; the standard-library loggers of aiohttp and aiodocker go through the same renderer.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and the standard library through one renderer on stderr."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if as_json else escape_controls,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # aiohttp's access log repeats what our request events say, one line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# Control characters (line breaks, terminal escapes) and the Unicode line separators.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(text: str) -> str:
    return _CONTROLS.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def escape_controls(
    logger: Any, name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Console lines carry request paths and other text from outside: a line break or a terminal
    escape in one must not start a forged line or repaint the terminal. (JSON escapes them.)"""
    return {k: _escaped(v) if isinstance(v, str) else v for k, v in event.items()}


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger named after its module; bind ids with ``structlog.contextvars``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
