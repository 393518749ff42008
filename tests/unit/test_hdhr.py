"""The HDHomeRun tuner's identity and packets: device ids libhdhomerun accepts, discovery
replies in its format, and the JSON fields media servers read."""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway import hdhr_id
from acestream_gateway.ops import hdhr_discovery as disco
from acestream_gateway.settings import Settings

# libhdhomerun's hdhomerun_discover_validate_device_id, written out as the library does it.
LOOKUP = [0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0]


def libhdhomerun_accepts(device_id: int) -> bool:
    checksum = 0
    checksum ^= LOOKUP[(device_id >> 28) & 0x0F]
    checksum ^= (device_id >> 24) & 0x0F
    checksum ^= LOOKUP[(device_id >> 20) & 0x0F]
    checksum ^= (device_id >> 16) & 0x0F
    checksum ^= LOOKUP[(device_id >> 12) & 0x0F]
    checksum ^= (device_id >> 8) & 0x0F
    checksum ^= LOOKUP[(device_id >> 4) & 0x0F]
    checksum ^= (device_id >> 0) & 0x0F
    return checksum == 0


@pytest.mark.parametrize(
    ("device_id", "valid"),
    [
        (0x10100000, True),  # the table gives 0x5 twice and 0xA twice: they cancel
        (0x1010000A, False),
        (0x12345674, True),
        (0x12345678, False),
        (0x1040B9D5, True),
        (0x1040B9D0, False),
        (0x00000000, True),  # valid, though no tuner has it
        (0xFFFFFFFF, True),  # the wildcard passes too: a derived id must avoid it
    ],
)
def test_check_digit_vectors_of_the_library_algorithm(device_id: int, valid: bool) -> None:
    assert libhdhomerun_accepts(device_id) is valid
    assert hdhr_id.is_valid(device_id) is valid


@given(st.integers(0, 0xFFFFFFFF))
def test_the_check_is_the_library_check_and_fix_makes_any_id_pass(value: int) -> None:
    assert hdhr_id.is_valid(value) is libhdhomerun_accepts(value)
    assert libhdhomerun_accepts(hdhr_id.fix(value))
    assert hdhr_id.fix(value) >> 4 == value >> 4


@given(st.text(min_size=1, max_size=63))
def test_a_derived_id_passes_and_is_never_a_wildcard(name: str) -> None:
    value = hdhr_id.derive(name)
    assert libhdhomerun_accepts(value)
    assert value not in (0, 0xFFFFFFFF)
    assert hdhr_id.derive(name) == value


def test_the_device_id_is_stable_per_instance_and_a_wrong_one_is_refused() -> None:
    assert Settings().hdhr_device() == Settings().hdhr_device()
    assert Settings(gateway_instance_name="a").hdhr_device() != Settings().hdhr_device()
    assert Settings(hdhr_device_id="12345674").hdhr_device() == 0x12345674
    with pytest.raises(ValueError, match="12345674 passes"):
        Settings(hdhr_device_id="12345678")
    with pytest.raises(ValueError, match="8 hexadecimal digits"):
        Settings(hdhr_device_id="xyz")


def test_the_tuner_count_follows_the_fleet_unless_set() -> None:
    assert Settings(max_active_replicas=5, max_streams_per_engine=3).hdhr_tuners() == 15
    engines = "http://127.0.0.1:1,http://127.0.0.1:2"
    assert Settings(engine_urls=engines, max_streams_per_engine=2).hdhr_tuners() == 4
    assert Settings(hdhr_tuner_count=2).hdhr_tuners() == 2


ANNOUNCEMENT = disco.Announcement(0x12345674, 6, "http://10.0.0.2:8000", "abc")


def request(*fields: tuple[int, bytes]) -> bytes:
    return disco.frame(disco.TYPE_DISCOVER_REQ, list(fields))


def test_a_discover_request_for_any_tuner_gets_the_reply_with_every_field() -> None:
    packet = request(
        (disco.TAG_DEVICE_TYPE, struct.pack(">I", disco.DEVICE_TYPE_TUNER)),
        (disco.TAG_DEVICE_ID, struct.pack(">I", disco.WILDCARD)),
    )
    reply = disco.answer(packet, ANNOUNCEMENT)
    assert reply is not None
    assert struct.unpack("<I", reply[-4:])[0] == zlib.crc32(reply[:-4])
    packet_type, fields = disco.unframe(reply)
    assert packet_type == disco.TYPE_DISCOVER_RPY
    assert dict(fields) == {
        disco.TAG_DEVICE_TYPE: b"\x00\x00\x00\x01",
        disco.TAG_DEVICE_ID: b"\x12\x34\x56\x74",
        disco.TAG_TUNER_COUNT: b"\x06",
        disco.TAG_BASE_URL: b"http://10.0.0.2:8000",
        disco.TAG_LINEUP_URL: b"http://10.0.0.2:8000/lineup.json",
        disco.TAG_DEVICE_AUTH_STR: b"abc",
    }


@pytest.mark.parametrize(
    "packet",
    [
        request((disco.TAG_DEVICE_TYPE, struct.pack(">I", 5))),  # storage only
        request((disco.TAG_DEVICE_ID, struct.pack(">I", 0x10100000))),  # another device
        disco.frame(disco.TYPE_DISCOVER_RPY, []),  # a reply, not a request
        request()[:-1] + b"\x00",  # bad CRC
        b"\x00\x02",
        b"",
    ],
)
def test_other_packets_get_no_answer(packet: bytes) -> None:
    assert disco.answer(packet, ANNOUNCEMENT) is None


def test_a_request_for_this_id_or_by_multi_type_is_answered() -> None:
    by_id = request((disco.TAG_DEVICE_ID, struct.pack(">I", 0x12345674)))
    multi = request((disco.TAG_MULTI_TYPE, struct.pack(">II", 5, disco.DEVICE_TYPE_TUNER)))
    assert disco.answer(by_id, ANNOUNCEMENT) is not None
    assert disco.answer(multi, ANNOUNCEMENT) is not None


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=6))
def test_fields_of_any_length_survive_a_round_trip(fields: list[tuple[int, bytes]]) -> None:
    assert disco.unframe(disco.frame(7, fields)) == (7, fields)


@given(st.binary(max_size=64))
def test_no_datagram_makes_the_answer_raise(data: bytes) -> None:
    disco.answer(data, ANNOUNCEMENT)


@pytest.mark.parametrize(
    ("peer", "answered"),
    [
        ("127.0.0.1", True),
        ("192.168.1.20", True),
        ("10.1.2.3", True),
        ("172.16.0.9", True),
        ("169.254.3.4", True),
        ("fe80::1%eth0", True),
        ("::ffff:192.168.1.2", True),
        ("8.8.8.8", False),
        ("2001:4860::1", False),
        ("::ffff:8.8.8.8", False),
        ("nonsense", False),
    ],
)
def test_only_lan_senders_are_answered(peer: str, answered: bool) -> None:
    assert disco.from_lan(peer) is answered


class Sent(asyncio.DatagramTransport):
    """A datagram transport that keeps what is sent, bound to the wildcard address."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, object]] = []

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("0.0.0.0", disco.PORT) if name == "sockname" else default


def test_the_protocol_answers_a_lan_sender_with_its_route_address_and_ignores_the_internet() -> (
    None
):
    hosts: list[str] = []

    def announcement(host: str) -> disco.Announcement:
        hosts.append(host)
        return ANNOUNCEMENT

    protocol = disco.DiscoveryProtocol(announcement)
    transport = Sent()
    protocol.connection_made(transport)
    protocol.datagram_received(request(), ("8.8.8.8", 5000))
    assert transport.sent == []
    protocol.datagram_received(request(), ("127.0.0.1", 5000))
    assert transport.sent == [(ANNOUNCEMENT.reply(), ("127.0.0.1", 5000))]
    assert hosts == ["127.0.0.1"]  # bound to every address: the one on the route to the sender
