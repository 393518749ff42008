"""Reading a list or a guide within bounds: gzip inflated under the same limit (a small gzip
bomb is refused), truncated gzip refused, a missing file or a refused URL a clear reason."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import aiohttp
import pytest

from acestream_gateway.ops.lineup.fetch import FetchError, read_all


async def read(location: str, max_bytes: int = 1000) -> bytes:
    async with aiohttp.ClientSession() as http:
        return await read_all(location, http=http, max_bytes=max_bytes, timeout_s=5)


async def test_plain_and_gzip_files_read_the_same(tmp_path: Path) -> None:
    data = b"#EXTM3U\n" * 50
    (tmp_path / "plain").write_bytes(data)
    (tmp_path / "packed").write_bytes(gzip.compress(data))
    assert await read(str(tmp_path / "plain")) == data
    assert await read(str(tmp_path / "packed")) == data


async def test_the_limit_counts_inflated_bytes_so_a_gzip_bomb_is_refused(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    (tmp_path / "bomb").write_bytes(bomb)
    with pytest.raises(FetchError, match="larger than the limit of 1000 bytes"):
        await read(str(tmp_path / "bomb"))
    (tmp_path / "big").write_bytes(b"x" * 1001)
    with pytest.raises(FetchError, match="larger than the limit"):
        await read(str(tmp_path / "big"))
    (tmp_path / "fits").write_bytes(b"x" * 1000)
    assert len(await read(str(tmp_path / "fits"))) == 1000


async def test_truncated_gzip_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "cut").write_bytes(gzip.compress(b"#EXTM3U\n" * 100)[:30])
    with pytest.raises(FetchError, match="gzip data ends early"):
        await read(str(tmp_path / "cut"))
    with pytest.raises(FetchError, match="cannot read: No such file or directory"):
        await read(str(tmp_path / "missing.m3u"))


async def test_a_url_nobody_answers_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(FetchError, match="cannot fetch"):
            await read(f"http://127.0.0.1:{port}/list.m3u")


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/list.m3u", "http://[::1/list.m3u"])
async def test_a_url_the_client_cannot_use_is_a_clear_error(url: str) -> None:
    with pytest.raises(FetchError, match="cannot fetch"):
        await read(url)
