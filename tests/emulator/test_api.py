"""The engine's JSON API as the emulator serves it: probes, getstream inputs, answers, redirects."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import time

import aiohttp
import pytest

from acestream_gateway.emulator import access
from acestream_gateway.emulator.server import Emulator

from .conftest import StartEmulator
from .helpers import CONTENT_ID, OTHER_ID, get_json, start_session

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
INFOHASH = "a" * 40


async def test_get_version_reports_the_configured_version_and_its_code(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(version="3.10.2")
    url = emulator.url + "/webui/api/service?method=get_version"
    assert await get_json(http, url) == {
        "result": {"code": 3100200, "platform": "linux", "version": "3.10.2"},
        "error": None,
    }


async def test_default_version_is_3_2_3(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    answer = await get_json(http, emulator.url + "/webui/api/service?method=get_version")
    assert answer["result"]["code"] == 3020300


async def test_get_status_says_the_engine_answers(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = emulator.url + "/server/api?api_version=3&method=get_status"
    answer = await get_json(http, url)
    assert answer["result"]["playlist_loaded"] is True
    assert answer["result"]["version"]["version"] == "3.2.3"


@pytest.mark.parametrize("connected", [True, False])
async def test_network_status_follows_its_knob(
    start_emulator: StartEmulator, http: aiohttp.ClientSession, connected: bool
) -> None:
    emulator = await start_emulator(network_connected=connected)
    url = emulator.url + "/server/api?api_version=3&method=get_network_connection_status"
    assert await get_json(http, url) == {"result": {"connected": connected}}


async def test_unknown_service_method_is_an_engine_error(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    answer = await get_json(http, emulator.url + "/webui/api/service?method=nope")
    assert answer == {"result": None, "error": "unknown method"}


async def test_getstream_json_has_the_engine_fields_with_integer_flags(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    answer = await get_json(
        http, emulator.url + "/ace/getstream", params={"format": "json", "id": CONTENT_ID}
    )
    assert answer["error"] is None
    response = answer["response"]
    assert set(response) == {
        "playback_url",
        "stat_url",
        "command_url",
        "infohash",
        "playback_session_id",
        "is_live",
        "is_encrypted",
        "client_session_id",
    }
    ih = response["infohash"]
    assert HEX40.match(ih)
    assert HEX40.match(response["playback_session_id"])
    assert (response["is_live"], response["is_encrypted"], response["client_session_id"]) == (
        1,
        0,
        -1,
    )
    assert all(type(response[k]) is int for k in ("is_live", "is_encrypted", "client_session_id"))
    token = response["playback_url"].rsplit("/", 1)[1]
    assert HEX32.match(token)
    assert response["playback_url"] == f"{emulator.url}/ace/r/{ih}/{token}"
    assert response["stat_url"] == f"{emulator.url}/ace/stat/{ih}/{token}"
    assert response["command_url"] == f"{emulator.url}/ace/cmd/{ih}/{token}"


async def test_urls_are_built_from_the_callers_host_header(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    response = await start_session(http, emulator, headers={"Host": "acestream:6878"})
    for key in ("playback_url", "stat_url", "command_url"):
        assert response[key].startswith("http://acestream:6878/ace/")


async def test_manifest_json_gives_an_hls_playback_url(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    response = await start_session(http, emulator, path="/ace/manifest.m3u8")
    ih, token = response["infohash"], response["stat_url"].rsplit("/", 1)[1]
    assert response["playback_url"] == f"{emulator.url}/ace/m/{ih}/{token}.m3u8"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


BASE32 = base64.b32encode(bytes.fromhex(INFOHASH)).decode()


@pytest.mark.parametrize(
    ("params", "infohash"),
    [
        ({"id": CONTENT_ID}, _sha1(f"content:{CONTENT_ID}")),
        ({"content_id": CONTENT_ID.upper()}, _sha1(f"content:{CONTENT_ID}")),
        ({"infohash": INFOHASH.upper()}, INFOHASH),
        (
            {"url": "http://example.org/channel.acelive"},
            _sha1("url:http://example.org/channel.acelive"),
        ),
        ({"magnet": f"magnet:?xt=urn:btih:{INFOHASH}&dn=x"}, INFOHASH),
        ({"magnet": f"magnet:?xt=urn:btih:{BASE32}"}, INFOHASH),
        ({"id": CONTENT_ID, "file_indexes": "1"}, _sha1(f"content:{CONTENT_ID}")),
    ],
    ids=["id", "content_id", "infohash", "url", "magnet-hex", "magnet-base32", "file_indexes"],
)
async def test_every_input_kind_resolves_to_a_stable_infohash(
    emulator: Emulator, http: aiohttp.ClientSession, params: dict[str, str], infohash: str
) -> None:
    first = await start_session(http, emulator, query=params)
    again = await start_session(http, emulator, query=params)
    assert first["infohash"] == again["infohash"] == infohash
    assert first["playback_session_id"] == again["playback_session_id"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "missing content id"),
        (
            {"id": CONTENT_ID, "infohash": INFOHASH},
            "only one of id, infohash, url or magnet may be given",
        ),
        ({"id": "xyz"}, "invalid content id"),
        ({"id": CONTENT_ID + "0"}, "invalid content id"),
        ({"infohash": "g" * 40}, "invalid infohash"),
        ({"url": "ftp://example.org/x"}, "invalid transport file url"),
        ({"magnet": "magnet:?dn=nothing"}, "invalid magnet link"),
        ({"magnet": "http://not-a-magnet"}, "invalid magnet link"),
        ({"id": CONTENT_ID, "file_indexes": "x"}, "invalid file_indexes"),
    ],
)
async def test_bad_input_gets_the_engine_json_error_with_http_200(
    emulator: Emulator, http: aiohttp.ClientSession, params: dict[str, str], error: str
) -> None:
    url = emulator.url + "/ace/getstream"
    answer = await get_json(http, url, params={**params, "format": "json"})
    assert answer == {"response": None, "error": error}


async def test_unknown_content_gets_an_error_and_no_session(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(unknown_ids=[CONTENT_ID])
    url = emulator.url + "/ace/getstream"
    answer = await get_json(http, url, params={"id": CONTENT_ID, "format": "json"})
    assert answer == {"response": None, "error": "failed to load content"}
    assert (await start_session(http, emulator, id=OTHER_ID))["infohash"]
    assert emulator.stats()["sessions_started"] == 1


async def test_wildcard_makes_every_content_unknown(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(unknown_ids="*")
    url = emulator.url + "/ace/manifest.m3u8"
    answer = await get_json(http, url, params={"infohash": INFOHASH, "format": "json"})
    assert answer["response"] is None


async def test_getstream_without_json_redirects_to_the_playback_url_then_to_content(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = emulator.url + "/ace/getstream"
    async with http.get(url, params={"id": CONTENT_ID}, allow_redirects=False) as resp:
        assert resp.status == 302
        playback = resp.headers["Location"]
    assert re.fullmatch(rf"{emulator.url}/ace/r/[0-9a-f]{{40}}/[0-9a-f]{{32}}", playback)
    async with http.get(playback, allow_redirects=False) as resp:
        assert resp.status == 302
        content = resp.headers["Location"]
    assert re.fullmatch(rf"{emulator.url}/content/[0-9a-f]{{40}}/[0-9a-f]{{32}}", content)


async def test_manifest_without_json_redirects_to_the_playlist(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = emulator.url + "/ace/manifest.m3u8"
    async with http.get(url, params={"id": CONTENT_ID}, allow_redirects=False) as resp:
        assert resp.status == 302
        assert re.search(r"/ace/m/[0-9a-f]{40}/[0-9a-f]{32}\.m3u8$", resp.headers["Location"])


async def test_getstream_without_json_fails_plainly_for_bad_input(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(emulator.url + "/ace/getstream", allow_redirects=False) as resp:
        assert resp.status == 500


async def test_json_delay_slows_the_getstream_answer(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(json_delay_s=0.4)
    started = time.monotonic()
    await start_session(http, emulator)
    assert time.monotonic() - started >= 0.35


async def test_api_delay_slows_the_probes(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(api_delay_s=0.4)
    started = time.monotonic()
    await get_json(http, emulator.url + "/webui/api/service?method=get_version")
    assert time.monotonic() - started >= 0.35


async def test_without_bind_all_clients_off_the_local_subnets_are_refused(
    start_emulator: StartEmulator, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign_only = (ipaddress.ip_network("10.0.0.0/8"),)
    monkeypatch.setattr(access, "local_networks", lambda: foreign_only)
    emulator = await start_emulator(bind_all=False)
    async with http.get(emulator.url + "/webui/api/service?method=get_version") as resp:
        assert resp.status == 403


async def test_without_bind_all_localhost_is_served(
    start_emulator: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = await start_emulator(bind_all=False)
    answer = await get_json(http, emulator.url + "/webui/api/service?method=get_version")
    assert answer["error"] is None


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("172.17.0.1", True),
        ("192.0.2.77", True),
        ("192.0.3.1", False),
        ("8.8.8.8", False),
        ("2001:db8::1", False),
        (None, False),
        ("garbage", False),
    ],
)
def test_local_subnets_are_the_directly_connected_routes(peer: str | None, allowed: bool) -> None:
    networks = access.LOOPBACK + tuple(access.parse_routes(ROUTES.splitlines()[1:]))
    assert access.is_allowed(peer, networks) is allowed
