"""HDHomeRun device ids: 8 hex digits whose last digit is a check digit.

libhdhomerun (``hdhomerun_discover_validate_device_id``), and media servers after it, accept a
device id only when the XOR of its eight nibbles, every other one first mapped through a fixed
table, is zero. The gateway's id is HDHR_DEVICE_ID, else derived from its instance name, so it is
the same on every start and two gateways on one LAN differ (docs/HDHOMERUN.md).
"""

from __future__ import annotations

import hashlib
import re

_TABLE = (0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0)
_HEX8 = re.compile(r"^[0-9A-Fa-f]{8}$")


def _checksum(value: int) -> int:
    """XOR of the nibbles, the odd ones (from the top) through the table."""
    total = 0
    for shift in range(28, -4, -4):
        nibble = (value >> shift) & 0xF
        total ^= _TABLE[nibble] if (shift // 4) % 2 == 1 else nibble
    return total


def is_valid(device_id: int) -> bool:
    """Whether libhdhomerun accepts ``device_id``."""
    return _checksum(device_id) == 0


def parse(text: str) -> int:
    """A device id written as 8 hex digits (raises ValueError with the reason)."""
    if not _HEX8.match(text.strip()):
        raise ValueError(f"must be 8 hexadecimal digits, got {text!r}")
    value = int(text, 16)
    if not is_valid(value):
        raise ValueError(f"{text!r} fails the HDHomeRun check digit; {fix(value):08X} passes")
    return value


def fix(value: int) -> int:
    """``value`` with its last nibble set so that it passes the check."""
    value &= 0xFFFFFFF0
    return value | _checksum(value)


def derive(name: str) -> int:
    """A valid device id derived from ``name`` (the same name gives the same id)."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    value = fix(digest)
    if value in (0, 0xFFFFFFFF) or not is_valid(value):  # never the wildcard
        value = fix(value ^ 0x10000000)
    return value
