"""How long an HLS player waits: from its first playlist request to a playable first segment
(the playlist answered, then its newest segment fetched whole), for a new channel, for a channel
already playing to TS players only (its segments start being cut at that request), and for one
already cut for HLS players. Writes the ``hls`` section of docs/BENCHMARKS.md.

    python -m tests.bench.hls_start [--runs 5] [--doc docs/BENCHMARKS.md]

The gateway runs in-process; the engine is one emulator process on loopback, shaped like the
other phases' (1 s prebuffer, a 4 MB burst, then 4 Mbit/s, a keyframe every 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from tests.integration.local import Emulator, gateway, settings

ROOT = Path(__file__).resolve().parents[2]
ENGINE = {
    "prebuffer_s": "1",
    "burst_bytes": "4000000",
    "bitrate_bps": "4000000",
    "keyframe_interval_s": "2",
}
CASES = ("new channel", "playing, TS players only", "playing, already cut for HLS")


async def first_segment(http: aiohttp.ClientSession, url: str) -> float:
    """Seconds from the playlist request to the newest listed segment fetched whole."""
    started = time.monotonic()
    async with http.get(url) as resp:
        text = await resp.text()
        assert resp.status == 200, text
    newest = [line for line in text.splitlines() if line and not line.startswith("#")][-1]
    segment_url = url.rsplit("/", 1)[0] + "/" + newest
    async with http.get(segment_url) as resp:
        data = await resp.read()
        assert resp.status == 200
        assert data[:1] == b"\x47"
    return time.monotonic() - started


async def measure(runs: int) -> dict[str, list[float]]:
    engine = Emulator(**ENGINE)
    results: dict[str, list[float]] = {case: [] for case in CASES}
    try:
        cfg = settings(max_streams_per_engine=3 * runs + 1, stream_linger_s=0.5)
        async with gateway(cfg, engine) as server, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.port}/ace"
            for run in range(runs):
                new, ts_only = f"{2 * run + 1:040x}", f"{2 * run + 2:040x}"
                url = f"{base}/manifest.m3u8?id={new}"
                results[CASES[0]].append(await first_segment(http, url))
                results[CASES[2]].append(await first_segment(http, url))
                async with http.get(f"{base}/getstream?id={ts_only}") as player:
                    deadline = time.monotonic() + 6  # a TS player has watched for a while
                    while time.monotonic() < deadline:
                        await player.content.read(65536)
                    url = f"{base}/manifest.m3u8?id={ts_only}"
                    results[CASES[1]].append(await first_segment(http, url))
    finally:
        engine.stop()
    return results


def section(results: dict[str, list[float]], runs: int, command: str) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## HLS: from the first playlist request to a playable first segment",
        "",
        f"- Date: {date}; {runs} runs per case",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- Command: `{command}`",
        "- Stream: the engine emulator on loopback, 1 s prebuffer, a 4 MB burst, then 4 Mbit/s "
        "with a keyframe every 2 s; `HLS_SEGMENT_S=4`, `HLS_WINDOW=6`",
        "- Measured: the playlist request until its newest segment has been fetched whole",
        "",
        "| channel | median | min | max |",
        "|---|---:|---:|---:|",
    ]
    for case, values in results.items():
        lines.append(
            f"| {case} | {statistics.median(values):.2f} s | {min(values):.2f} s "
            f"| {max(values):.2f} s |"
        )
    lines += [
        "",
        "A new channel waits for the engine (its prebuffer) and one segment of stream, which the "
        "engine's burst delivers at once. A channel that TS players already watch is cut from "
        "its latest keyframe the broadcast still holds, and its first segment ends at the next "
        "keyframe at least a second on: its first HLS request waits at most a keyframe interval "
        "(here 2 s), not a whole segment of live stream. Once the channel is cut for HLS, a "
        "playlist and its newest segment are answered from memory at once.",
    ]
    return "\n".join(lines)


def write(doc: Path, body: str) -> None:
    page = doc.read_text()
    marked = re.compile(r"<!-- hls -->\n.*?\n<!-- /hls -->", re.DOTALL)
    block = f"<!-- hls -->\n{body}\n<!-- /hls -->"
    page = marked.sub(lambda _: block, page) if marked.search(page) else page + "\n" + block + "\n"
    doc.write_text(page)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hls_start", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.runs))
    command = " ".join(["python -m tests.bench.hls_start", *(argv or sys.argv[1:])])
    body = section(results, args.runs, command)
    print(body)
    write(args.doc, body)


if __name__ == "__main__":
    main()
