"""``python -m acestream_gateway``."""

from .cli import main

main()
