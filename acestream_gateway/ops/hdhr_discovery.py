"""The HDHomeRun discovery protocol on UDP port 65001, so media servers find the tuner alone.

libhdhomerun's packet: a big-endian type and payload length (two bytes each), the payload as
tag-length-value fields (the length one byte, or two when it is 128 or more: the low seven bits
with the top bit set, then the rest), and the CRC32 of all that, little-endian. A discover
request names the device type and id it looks for (or the wildcard); the reply carries the device
type (tuner), device id, tuner count, base URL, lineup URL and device auth. Anything else that
arrives is passed over without an answer, and so are requests from addresses no LAN has (a
reply is larger than the request: a gateway on a public address must not reflect it at a forged
sender). The packet format is in docs/HDHOMERUN.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from ..logs import get_logger

log = get_logger(__name__)

PORT = 65001
TYPE_DISCOVER_REQ = 0x0002
TYPE_DISCOVER_RPY = 0x0003
TAG_DEVICE_TYPE = 0x01
TAG_DEVICE_ID = 0x02
TAG_TUNER_COUNT = 0x10
TAG_LINEUP_URL = 0x27
TAG_BASE_URL = 0x2A
TAG_DEVICE_AUTH_STR = 0x2B
TAG_MULTI_TYPE = 0x2D
DEVICE_TYPE_TUNER = 0x00000001
WILDCARD = 0xFFFFFFFF


class PacketError(ValueError):
    """Not a well-formed HDHomeRun packet."""


def frame(packet_type: int, fields: list[tuple[int, bytes]]) -> bytes:
    """A whole packet: header, TLV payload, CRC32 (little-endian)."""
    payload = b"".join(bytes([tag]) + _length(len(value)) + value for tag, value in fields)
    body = struct.pack(">HH", packet_type, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _length(size: int) -> bytes:
    if size < 128:
        return bytes([size])
    return bytes([(size & 0x7F) | 0x80, size >> 7])


def unframe(packet: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """The type and TLV fields of a packet (raises :class:`PacketError`)."""
    if len(packet) < 8:
        raise PacketError("shorter than a header and a CRC")
    packet_type, size = struct.unpack(">HH", packet[:4])
    if len(packet) != 4 + size + 4:
        raise PacketError("length does not match")
    body, crc = packet[:-4], struct.unpack("<I", packet[-4:])[0]
    if zlib.crc32(body) != crc:
        raise PacketError("bad CRC")
    return packet_type, list(_fields(body[4:]))


def _fields(payload: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    while at < len(payload):
        if at + 2 > len(payload):
            raise PacketError("truncated field")
        tag, size = payload[at], payload[at + 1]
        at += 2
        if size & 0x80:
            if at >= len(payload):
                raise PacketError("truncated field")
            size = (size & 0x7F) | (payload[at] << 7)
            at += 1
        if at + size > len(payload):
            raise PacketError("truncated field")
        yield tag, payload[at : at + size]
        at += size


@dataclass(frozen=True, slots=True)
class Announcement:
    """What the reply says about the tuner."""

    device_id: int
    tuner_count: int
    base_url: str
    device_auth: str

    def reply(self) -> bytes:
        return frame(
            TYPE_DISCOVER_RPY,
            [
                (TAG_DEVICE_TYPE, struct.pack(">I", DEVICE_TYPE_TUNER)),
                (TAG_DEVICE_ID, struct.pack(">I", self.device_id)),
                (TAG_TUNER_COUNT, bytes([min(self.tuner_count, 255)])),
                (TAG_BASE_URL, self.base_url.encode()),
                (TAG_LINEUP_URL, f"{self.base_url}/lineup.json".encode()),
                (TAG_DEVICE_AUTH_STR, self.device_auth.encode()),
            ],
        )


def answer(packet: bytes, announcement: Announcement) -> bytes | None:
    """The reply to one datagram, or None when it asks for no tuner of this id."""
    try:
        packet_type, fields = unframe(packet)
    except PacketError:
        return None
    if packet_type != TYPE_DISCOVER_REQ:
        return None
    wanted_types: list[int] = []
    for tag, value in fields:
        if tag == TAG_DEVICE_TYPE and len(value) == 4:
            wanted_types.append(struct.unpack(">I", value)[0])
        elif tag == TAG_MULTI_TYPE and len(value) % 4 == 0:
            wanted_types += [v for (v,) in struct.iter_unpack(">I", value)]
        elif tag == TAG_DEVICE_ID and len(value) == 4:
            wanted = struct.unpack(">I", value)[0]
            if wanted not in (WILDCARD, announcement.device_id):
                return None
    if wanted_types and not {WILDCARD, DEVICE_TYPE_TUNER} & set(wanted_types):
        return None
    return announcement.reply()


class DiscoveryProtocol(asyncio.DatagramProtocol):
    """Answers discover requests with the announcement of the moment."""

    def __init__(self, announcement: Callable[[str], Announcement]) -> None:
        self._announcement = announcement
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is no subclass of asyncio's, though it is one in all but name.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self._transport is None or not from_lan(str(addr[0])):
            return
        local = self._transport.get_extra_info("sockname")
        host = str(local[0]) if local else ""
        if host in ("", "0.0.0.0", "::"):
            host = local_address_towards(str(addr[0]))
        reply = answer(data, self._announcement(host))
        if reply is not None:
            self._transport.sendto(reply, addr)


def from_lan(peer: str) -> bool:
    """Whether ``peer`` is an address discovery is for: loopback, private or link-local."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_loopback or address.is_private or address.is_link_local


def local_address_towards(peer: str) -> str:
    """This host's address on the route to ``peer`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer, PORT))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
