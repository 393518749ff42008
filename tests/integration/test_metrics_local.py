"""``/metrics`` of a running gateway: prometheus-client's exposition that promtool accepts, with
counters that move while a stream plays."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.local import FAST, Emulator, gateway, settings, stream_url
from tests.support import Player, need_promtool, wait_until


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


def samples(text: str) -> dict[str, float]:
    """Every sample by name and labels, e.g. ``acestream_gateway_engines{state="ready"}``."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def promtool_check(text: str) -> None:
    result = subprocess.run(
        [need_promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_metrics_pass_promtool_and_their_counters_move_while_a_stream_plays(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**FAST)
    async with gateway(settings(), engine) as server:
        base = f"http://127.0.0.1:{server.port}"
        before = await scrape(base)
        promtool_check(before)
        idle = samples(before)
        assert idle['acestream_gateway_engines{state="ready"}'] == 1
        assert idle["acestream_gateway_capacity_engines"] == 1
        assert idle["acestream_gateway_capacity_used"] == 0
        assert idle["acestream_gateway_bytes_in_total"] == 0
        assert idle['acestream_gateway_circuit_breaker_state{state="closed"}'] == 1
        assert idle["acestream_gateway_vpn_enabled"] == 0
        player = Player(stream_url(server))
        try:
            await player.receives(188 * 500)
            first = samples(await scrape(base))
            assert first["acestream_gateway_capacity_used"] == 1
            assert first["acestream_gateway_streams"] == 1
            assert first["acestream_gateway_players"] == 1
            assert first["acestream_gateway_engine_session_starts_total"] == 1
            assert first["acestream_gateway_time_to_first_byte_seconds_count"] == 1
            await player.receives(188 * 500)
            text = await scrape(base)
            promtool_check(text)
            second = samples(text)
            for counter in (
                "acestream_gateway_bytes_in_total",
                "acestream_gateway_bytes_out_total",
            ):
                assert second[counter] > first[counter] > 0
        finally:
            await player.close()

        async def ended() -> bool:
            return samples(await scrape(base))["acestream_gateway_streams"] == 0

        await wait_until(ended, timeout_s=10)
        after = samples(await scrape(base))
        # Counters keep what the ended channel moved.
        assert (
            after["acestream_gateway_bytes_in_total"] >= second["acestream_gateway_bytes_in_total"]
        )
