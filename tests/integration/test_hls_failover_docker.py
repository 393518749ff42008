"""HLS across a failover: the gateway in-process with its real fleet on the Docker daemon and the
emulator image; the engine under an HLS client and ffmpeg is killed, and the playlist goes on
with one discontinuity while ffmpeg keeps decoding."""

from __future__ import annotations

import asyncio
import subprocess
import time

import aiohttp
import pytest

from acestream_gateway.http.keys import REGISTRY
from tests.integration.test_failover_docker import fleet_settings, ready_engines
from tests.integration.test_hls_local import Playlist, fetch_playlist
from tests.support import CHANNEL, need_ffmpeg, wait_until
from tests.support import gateway_server as gateway

pytestmark = pytest.mark.docker


class FfmpegProgress:
    """ffmpeg decoding a URL to nothing, with the frames it decoded so far and when."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.frames: list[tuple[float, int]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            key, _, value = line.decode().strip().partition("=")
            if key == "frame":
                self.frames.append((time.monotonic(), int(value)))

    def frames_at(self, when: float) -> int:
        return max((n for at, n in self.frames if at <= when), default=0)

    def latest(self) -> int:
        return self.frames[-1][1] if self.frames else 0


async def test_killing_the_engine_under_hls_players_shows_one_discontinuity_and_ffmpeg_goes_on(
    instance: str,
) -> None:
    ffmpeg = need_ffmpeg()
    settings = fleet_settings(instance, 4, hls_segment_s=1, hls_window=6)
    async with gateway(settings) as server, aiohttp.ClientSession() as http:
        await wait_until(lambda: ready_engines(server) == 1, timeout_s=60)
        url = f"http://127.0.0.1:{server.port}/ace/manifest.m3u8?id={CHANNEL}"
        first = await fetch_playlist(http, url)
        proc = await asyncio.create_subprocess_exec(
            *(ffmpeg, "-v", "error", "-nostats", "-progress", "pipe:1", "-i", url),
            *("-t", "120", "-f", "null", "-"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        decoding = FfmpegProgress(proc)
        try:
            await wait_until(lambda: decoding.latest() >= 100, timeout_s=30)  # 4 s of video
            await wait_until(lambda: ready_engines(server) == 2, timeout_s=60)
            (channel,) = server.app[REGISTRY].channels()
            assert channel.claim is not None
            victim = channel.claim.engine
            sequences = [first.media_sequence]
            killed_at = time.monotonic()
            subprocess.run(["docker", "kill", victim.id], check=True, capture_output=True)
            after: Playlist | None = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                playlist = await fetch_playlist(http, url)
                sequences.append(playlist.media_sequence)
                if "#EXT-X-DISCONTINUITY\n" in playlist.text:
                    after = playlist
                    break
                await asyncio.sleep(0.5)
            assert after is not None, "the segment after the failover is marked"
            assert after.text.count("#EXT-X-DISCONTINUITY\n") == 1
            assert sequences == sorted(sequences)
            # The playlist goes on growing past the break, and ffmpeg decodes on across it: 10 s
            # of frames after the kill is more than the window it could have held before.
            grown = after.sequence(after.uris[-1])
            await wait_until(
                lambda: decoding.latest() >= decoding.frames_at(killed_at) + 250, timeout_s=40
            )
            later = await fetch_playlist(http, url)
            assert later.sequence(later.uris[-1]) > grown
            assert later.media_sequence >= after.media_sequence
            assert proc.returncode is None, "ffmpeg is still reading the playlist"
            assert channel.claim is not None
            assert channel.claim.engine.id != victim.id
        finally:
            if proc.returncode is None:
                proc.terminate()
            await decoding.task
            assert proc.stderr is not None
            err = await proc.stderr.read()
            await proc.wait()
        errors = [
            line
            for line in err.decode(errors="replace").splitlines()
            if "Non-monotonic" not in line and "Exiting normally" not in line
        ]
        print("ffmpeg said:", err.decode(errors="replace")[-2000:])
        assert not errors, errors
