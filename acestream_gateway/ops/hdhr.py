"""What the gateway answers as an HDHomeRun network tuner, built purely from its identity,
its lineup and the base URL players reach it at.

Field names and types are those media servers read (Jellyfin's ``DiscoverResponse`` and
``Channels``, Plex and Emby alike): strings, ``TunerCount`` an integer. ``HD`` and ``Favorite``
are left out: a channel list does not say them. The model is a plain (non-transcoding) tuner, so
media servers ask for the native stream, which is what the gateway passes on. The facts relied
on are in docs/HDHOMERUN.md.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from .. import __version__
from .lineup.numbering import Lineup

MODEL = "HDHR3-US"
FIRMWARE = "hdhomerun3_atsc"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the tuner is: the same on every start (derived from the settings alone)."""

    device_id: int
    tuner_count: int
    friendly_name: str

    @property
    def device_hex(self) -> str:
        return f"{self.device_id:08X}"

    @property
    def device_auth(self) -> str:
        """A stable token where real tuners carry their account key; nothing checks it."""
        return hashlib.sha256(f"auth:{self.device_hex}".encode()).hexdigest()[:24]

    @property
    def udn(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hdhomerun:{self.device_hex}"))


def discover(identity: Identity, base: str) -> dict[str, object]:
    """``/discover.json``."""
    return {
        "FriendlyName": identity.friendly_name,
        "ModelNumber": MODEL,
        "FirmwareName": FIRMWARE,
        "FirmwareVersion": __version__,
        "DeviceID": identity.device_hex,
        "DeviceAuth": identity.device_auth,
        "BaseURL": base,
        "LineupURL": f"{base}/lineup.json",
        "TunerCount": identity.tuner_count,
    }


def lineup(channels: Lineup, base: str, token: str | None = None) -> list[dict[str, object]]:
    """``/lineup.json``: each channel's number, name and the URL that plays it."""
    query = f"?{urlencode({'token': token})}" if token else ""
    return [
        {
            "GuideNumber": str(channel.number),
            "GuideName": channel.name,
            "URL": f"{base}/auto/v{channel.number}{query}",
        }
        for channel in channels.channels
    ]


def lineup_status() -> dict[str, object]:
    """``/lineup_status.json``: never scanning; the lineup is the channel list."""
    return {
        "ScanInProgress": 0,
        "ScanPossible": 1,
        "Source": "Cable",
        "SourceList": ["Cable"],
    }


def device_xml(identity: Identity, base: str) -> str:
    """``/device.xml``: the UPnP device description, with the same identity."""
    name = escape(identity.friendly_name)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<root xmlns="urn:schemas-upnp-org:device-1-0">\n'
        f"  <URLBase>{escape(base)}</URLBase>\n"
        "  <specVersion><major>1</major><minor>0</minor></specVersion>\n"
        "  <device>\n"
        "    <deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>\n"
        f"    <friendlyName>{name}</friendlyName>\n"
        "    <manufacturer>Silicondust</manufacturer>\n"
        f"    <modelName>{MODEL}</modelName>\n"
        f"    <modelNumber>{MODEL}</modelNumber>\n"
        f"    <serialNumber>{identity.device_hex}</serialNumber>\n"
        f"    <UDN>uuid:{identity.udn}</UDN>\n"
        "  </device>\n"
        "</root>\n"
    )
