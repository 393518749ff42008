"""The dashboard's endpoint card in headless Chromium against a gateway with two Docker endpoints,
one of which cannot be reached: each endpoint is listed with its reachability (and why not), its
engines against its share, its room and its ports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from acestream_gateway.app import create_app
from tests.browser import chromium, severe
from tests.support import emulator_fleet_settings, free_port, free_port_range

pytestmark = pytest.mark.docker


async def test_the_endpoint_card_lists_each_endpoint_with_its_engines_room_and_ports(
    instance: str, tmp_path: Path
) -> None:
    lo, hi = free_port_range(2)
    far_lo, far_hi = free_port_range(2)
    here = {"name": "here", "url": "unix:///var/run/docker.sock", "ports": f"{lo}-{hi}"}
    away = {"name": "away", "url": f"unix://{tmp_path}/none.sock", "ports": f"{far_lo}-{far_hi}"}
    endpoints = [{**here, "max_engines": 2}, {**away, "max_engines": 2}]
    settings = emulator_fleet_settings(
        instance,
        4,
        docker_endpoints=json.dumps(endpoints),
        engine_env={"EMULATOR_PREBUFFER_S": "0"},
        max_active_replicas=4,
        min_replicas=1,
        docker_timeout_s=5,
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        async with chromium() as browser:
            await browser.open(f"http://127.0.0.1:{server.port}/dashboard")
            figure = await browser.text_of("#endpoints-figure", lambda t: "reachable" in t)
            assert figure == "1 / 2 reachable"
            line = await browser.text_of(
                '#endpoints-list li[data-endpoint="here"]', lambda t: "1 / 2 engines" in t
            )
            assert line == f"here: up · 1 / 2 engines · room 1 · ports {lo}-{hi} (1 held)"
            line = await browser.text_of('#endpoints-list li[data-endpoint="away"]', bool)
            assert line.startswith("away: down: ")
            # Never listed since the start: how many engines of ours run there is not known, so
            # its whole share stays counted and it has no room (docs/TOPOLOGY.md).
            assert f"· 0 / 2 engines · room 0 · ports {far_lo}-{far_hi} (0 held)" in line
            assert severe(await browser.console()) == []
    finally:
        await server.close()
