"""The write path end to end: the channel hands blocks to many players' sockets at once; players
that block mid-block or leave mid-write; the body is close-delimited like the engine's and real
player toolchains decode it."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
from collections.abc import Callable

from acestream_gateway.http.keys import REGISTRY
from tests.integration.local import Emulator, gateway, settings, stream_url
from tests.support import CHANNEL, need_ffmpeg, wait_until

# The first player starts the session; the others join while the engine prebuffers, so every
# player starts at the same byte. Small pieces every 20 ms, as a live engine writes them.
LIVE = {
    "prebuffer_s": "0.5",
    "burst_bytes": "376000",
    "bitrate_bps": "2000000",
    "write_interval_s": "0.02",
}
_NULL_PID = 0x1FFF


class RawPlayer:
    """A player on a plain socket: its receive buffer, when it reads and when it leaves are ours."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes):
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def join(cls, port: int | None, *, rcvbuf: int | None = None) -> RawPlayer:
        assert port is not None
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        writer.write(f"GET /ace/getstream?id={CHANNEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        return cls(reader, writer, head)

    async def read(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), 20)

    def reset(self) -> None:
        """Leave at once with a TCP reset, as a player killed mid-stream does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def media(data: bytes) -> bytes:
    """The stream without the keep-alive packets before its first media packet."""
    offset = 0
    while offset + 188 <= len(data) and ((data[offset + 1] & 0x1F) << 8 | data[offset + 2]) == (
        _NULL_PID
    ):
        offset += 188
    return data[offset:]


async def test_many_players_at_once_get_the_very_same_bytes(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**LIVE)
    async with gateway(settings(), engine) as server:
        players = [await RawPlayer.join(server.port) for _ in range(30)]
        got = await asyncio.gather(*(p.read(600_000) for p in players))
        streams = [media(data) for data in got]
        shortest = min(len(s) for s in streams)
        assert shortest > 500_000
        assert all(s[:shortest] == streams[0][:shortest] for s in streams)
        assert all(streams[0][i] == 0x47 for i in range(0, shortest, 188))
        for player in players:
            player.writer.close()


async def test_the_body_is_close_delimited_like_the_engines(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**LIVE)
    async with gateway(settings(), engine) as server:
        player = await RawPlayer.join(server.port)
        head = player.head.decode("latin-1").lower()
        assert head.startswith("http/1.1 200")
        assert "connection: close" in head
        assert "transfer-encoding" not in head
        assert "content-length" not in head
        data = media(await player.read(188 * 1000))
        assert all(data[i] == 0x47 for i in range(0, len(data), 188))  # no chunk sizes between
        player.writer.close()


async def test_a_player_that_blocks_mid_block_resumes_where_it_stopped(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**LIVE)
    async with gateway(settings(stall_timeout_s=10), engine) as server:
        steady = await RawPlayer.join(server.port)
        blocking = await RawPlayer.join(server.port, rcvbuf=4096)
        reading = asyncio.create_task(steady.read(900_000))
        first = await blocking.read(1000)
        await asyncio.sleep(1.5)  # its socket fills part-way through a block; the rest waits
        rest = await blocking.read(899_000)
        assert media(first + rest)[:800_000] == media(await reading)[:800_000]
        for player in (steady, blocking):
            player.writer.close()


async def test_a_player_that_leaves_mid_write_is_let_go_and_the_others_play_on(
    emulators: Callable[..., Emulator],
) -> None:
    engine = emulators(**{**LIVE, "bitrate_bps": "8000000"})
    async with gateway(settings(), engine) as server:
        staying = await RawPlayer.join(server.port)
        leaving = await RawPlayer.join(server.port, rcvbuf=4096)
        await leaving.read(1000)
        await asyncio.sleep(0.3)  # the gateway is part-way through writing to it
        leaving.reset()
        (channel,) = server.app[REGISTRY].channels()
        await wait_until(lambda: channel.broadcast.subscriber_count == 1, timeout_s=10)
        assert len(await staying.read(2_000_000)) == 2_000_000
        staying.writer.close()


async def test_ffmpeg_decodes_the_close_delimited_stream(
    emulators: Callable[..., Emulator],
) -> None:
    path = need_ffmpeg()  # what VLC, mpv and Kodi read HTTP streams with (libavformat)
    engine = emulators(**{**LIVE, "prebuffer_s": "0"})
    async with gateway(settings(), engine) as server:
        proc = await asyncio.create_subprocess_exec(
            *(path, "-v", "error", "-i", stream_url(server), "-t", "2", "-f", "null", "-"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode(errors="replace")
