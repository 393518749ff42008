"""``python -m acestream_emulator`` (in the image) or ``acestream-emulator``: run one engine.

As PID 1 in a container the process ignores SIGTERM until it handles it, so the handler goes in
before the slow imports (aiohttp): a container stopped while it starts still stops at once.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _exit_while_starting)
    from .cli import run

    run(argv)


def _exit_while_starting(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


if __name__ == "__main__":
    main()
