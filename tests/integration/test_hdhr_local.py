"""The gateway as an HDHomeRun tuner: its JSON checked field by field against what Jellyfin's
HDHomeRun tuner reads (``DiscoverResponse``, ``Channels``; types included), ``/device.xml``
parsed as XML, and the real libhdhomerun client (Debian's ``hdhomerun-config``) finding it by
discovery at 127.0.0.1."""

from __future__ import annotations

import asyncio
import fcntl
import json
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from acestream_gateway import hdhr_id
from acestream_gateway.ops import hdhr_discovery as disco
from tests.integration.local import gateway, settings
from tests.support import GatewayProcess, free_port, need_tool, wait_until

A, B = "a" * 40, "b" * 40

# What Jellyfin's HdHomerunHost deserialises, by field, with its type.
DISCOVER_FIELDS = {
    "FriendlyName": str,
    "ModelNumber": str,
    "FirmwareName": str,
    "FirmwareVersion": str,
    "DeviceID": str,
    "DeviceAuth": str,
    "BaseURL": str,
    "LineupURL": str,
    "TunerCount": int,
}
CHANNEL_FIELDS = {"GuideNumber": str, "GuideName": str, "URL": str}
OPTIONAL_CHANNEL_FIELDS = {
    "VideoCodec": str,
    "AudioCodec": str,
    "Favorite": bool,
    "DRM": bool,
    "HD": bool,
}


def write_list(tmp_path: Path) -> Path:
    listing = tmp_path / "list.m3u"
    listing.write_text(
        "#EXTM3U\n"
        f'#EXTINF:-1 tvg-id="one" tvg-chno="4",One\nacestream://{A}\n'
        f"#EXTINF:-1,Two & more\nacestream://{B}\n"
    )
    return listing


async def fetch(server: TestServer, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.port}{path}"
        async with http.request(method, url, headers={"Host": "tuner.lan:8000"}) as resp:
            return resp.status, await resp.read(), resp.content_type


async def fetch_json(server: TestServer, path: str) -> Any:
    status, body, content_type = await fetch(server, path)
    assert status == 200
    assert content_type == "application/json"
    return json.loads(body)


async def test_discover_lineup_and_status_carry_the_fields_media_servers_read(
    tmp_path: Path,
) -> None:
    cfg = settings(
        channels_file=str(write_list(tmp_path)),
        hdhr_discovery=False,
        max_active_replicas=3,
        max_streams_per_engine=2,
    )
    async with gateway(cfg) as server:
        discover = await fetch_json(server, "/discover.json")
        assert set(discover) == set(DISCOVER_FIELDS)
        for name, kind in DISCOVER_FIELDS.items():
            assert type(discover[name]) is kind, name
        assert discover["TunerCount"] == 6
        assert discover["BaseURL"] == "http://tuner.lan:8000"
        assert discover["LineupURL"] == "http://tuner.lan:8000/lineup.json"
        assert len(discover["DeviceID"]) == 8
        assert hdhr_id.is_valid(int(discover["DeviceID"], 16))
        assert discover["DeviceID"] == f"{hdhr_id.derive('default'):08X}"
        assert "hdtc" not in discover["ModelNumber"].lower()  # not a transcoding model

        lineup = await fetch_json(server, "/lineup.json?show=found")
        assert lineup == [
            {"GuideNumber": "4", "GuideName": "One", "URL": "http://tuner.lan:8000/auto/v4"},
            {"GuideNumber": "5", "GuideName": "Two & more", "URL": "http://tuner.lan:8000/auto/v5"},
        ]
        for channel in lineup:
            assert set(channel) <= set(CHANNEL_FIELDS) | set(OPTIONAL_CHANNEL_FIELDS)
            for name, kind in CHANNEL_FIELDS.items():
                assert type(channel[name]) is kind, name

        status = await fetch_json(server, "/lineup_status.json")
        assert status == {
            "ScanInProgress": 0,
            "ScanPossible": 1,
            "Source": "Cable",
            "SourceList": ["Cable"],
        }
        assert (await fetch(server, "/lineup.post?scan=start", "POST"))[0] == 200
        assert (await fetch(server, "/lineup.post?scan=abort", "POST"))[0] == 200
        assert (await fetch(server, "/lineup.post?scan=sideways", "POST"))[0] == 400

        status_code, body, content_type = await fetch(server, "/device.xml")
        assert (status_code, content_type) == (200, "application/xml")
        root = ET.fromstring(body)
        ns = {"u": "urn:schemas-upnp-org:device-1-0"}
        assert root.findtext("u:URLBase", namespaces=ns) == "http://tuner.lan:8000"
        assert root.findtext("u:device/u:serialNumber", namespaces=ns) == discover["DeviceID"]
        assert root.findtext("u:device/u:friendlyName", namespaces=ns) == discover["FriendlyName"]
        assert (root.findtext("u:device/u:UDN", namespaces=ns) or "").startswith("uuid:")


async def test_a_set_device_id_tuner_count_and_public_url_are_announced(tmp_path: Path) -> None:
    cfg = settings(
        channels_file=str(write_list(tmp_path)),
        hdhr_discovery=False,
        hdhr_device_id="12345674",
        hdhr_tuner_count=3,
        public_base_url="https://tv.example/gw/",
        player_token="tok",
    )
    async with gateway(cfg) as server:
        discover = await fetch_json(server, "/discover.json")
        assert (discover["DeviceID"], discover["TunerCount"]) == ("12345674", 3)
        assert discover["BaseURL"] == "https://tv.example/gw"
        lineup = await fetch_json(server, "/lineup.json?token=tok")
        assert lineup[0]["URL"] == "https://tv.example/gw/auto/v4?token=tok"


@contextmanager
def discovery_port_lock() -> Iterator[None]:
    """One discovery test at a time on this machine: they all need UDP 65001 of 127.0.0.1."""
    with open("/tmp/acestream-gateway-hdhr-discovery.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tuner_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "ENGINE_URLS": f"http://127.0.0.1:{free_port()}",  # no engine needed to be found
        "CHANNELS_FILE": str(write_list(tmp_path)),
        "HDHR_DEVICE_ID": "12345674",
        **extra,
    }


async def answers(gateway: GatewayProcess) -> bool:
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(gateway.url + "/discover.json") as resp:
                return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_hdhomerun_config_discovers_the_served_gateway_at_127_0_0_1(tmp_path: Path) -> None:
    tool = need_tool("hdhomerun_config", "hdhomerun-config")
    gateway = GatewayProcess(tuner_env(tmp_path), tmp_path / "gateway.log")
    with discovery_port_lock():
        gateway.start()  # the real serve path: its event loop (uvloop) included
        try:
            await wait_until(lambda: answers(gateway), timeout_s=30)
            result = await asyncio.to_thread(
                subprocess.run,
                [tool, "discover", "127.0.0.1"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            assert result.stdout.strip() == "hdhomerun device 12345674 found at 127.0.0.1"
            fields = dict(await asyncio.to_thread(discover_reply))
            assert fields[disco.TAG_BASE_URL] == gateway.url.encode()
            assert fields[disco.TAG_LINEUP_URL] == f"{gateway.url}/lineup.json".encode()
            assert fields[disco.TAG_TUNER_COUNT] == bytes([2])
        finally:
            gateway.stop()
        assert "hdhr_discovery_listening" in gateway.event_names()
        assert gateway.errors() == []


async def test_a_discovery_port_that_cannot_be_bound_is_one_warning_and_the_gateway_serves(
    tmp_path: Path,
) -> None:
    gateway = GatewayProcess(tuner_env(tmp_path), tmp_path / "gateway.log")
    with discovery_port_lock(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", disco.PORT))
        gateway.start()
        try:
            await wait_until(lambda: answers(gateway), timeout_s=30)
        finally:
            gateway.stop()
    warnings = [e for e in gateway.events() if e.get("event") == "hdhr_discovery_unavailable"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert gateway.errors() == []


async def test_discovery_is_off_with_hdhr_discovery_false(tmp_path: Path) -> None:
    env = tuner_env(tmp_path, HDHR_DISCOVERY="false")
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    with discovery_port_lock():
        gateway.start()
        try:
            await wait_until(lambda: answers(gateway), timeout_s=30)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
                free.bind(("127.0.0.1", disco.PORT))  # nobody holds it
        finally:
            gateway.stop()
    assert "hdhr_discovery_listening" not in gateway.event_names()


def discover_reply() -> list[tuple[int, bytes]]:
    """The fields of the gateway's answer to a wildcard discover request sent to 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(disco.frame(disco.TYPE_DISCOVER_REQ, []), ("127.0.0.1", disco.PORT))
        packet_type, fields = disco.unframe(sock.recv(2048))
    assert packet_type == disco.TYPE_DISCOVER_RPY
    return fields
