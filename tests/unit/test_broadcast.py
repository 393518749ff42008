"""Fan-out: every player gets every byte in order; a slow one is dropped, never slowing others."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestream_gateway.streaming.broadcast import (
    Broadcast,
    BroadcastEnded,
    PlayerTooSlow,
    Subscriber,
)
from acestream_gateway.streaming.mpegts import NULL_PACKET


async def drain(subscriber: Subscriber) -> bytes:
    out = bytearray()
    while (data := await subscriber.read()) is not None:
        out += data
    return bytes(out)


async def test_players_at_the_live_edge_get_everything_published_after_they_joined() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    early = broadcast.subscribe()
    broadcast.publish(b"a" * 10)
    late = broadcast.subscribe()
    broadcast.publish(b"b" * 10)
    broadcast.close()
    assert await drain(early) == b"a" * 10 + b"b" * 10
    assert await drain(late) == b"b" * 10


async def test_a_player_left_further_behind_than_the_window_is_dropped() -> None:
    broadcast = Broadcast(window_bytes=100)
    slow = broadcast.subscribe()
    fast = broadcast.subscribe()
    for _ in range(20):
        broadcast.publish(b"x" * 10)
        assert await fast.read() == b"x" * 10
    with pytest.raises(PlayerTooSlow):
        await slow.read()


async def test_the_window_holds_an_initial_burst_for_a_player_that_reads_it_later() -> None:
    broadcast = Broadcast(window_bytes=32 << 20)
    player = broadcast.subscribe()
    burst = [bytes([i]) * 188 * 100 for i in range(100)]  # ~1.9 MB at once
    for chunk in burst:
        broadcast.publish(chunk)
    broadcast.close()
    assert await drain(player) == b"".join(burst)


async def test_memory_is_released_once_every_player_has_read() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    player = broadcast.subscribe()
    broadcast.publish(b"x" * 1000)
    broadcast.publish(b"y" * 1000)
    await player.read()
    broadcast.publish(b"z" * 10)
    assert broadcast.held_bytes <= 10 + 1000
    player.close()
    broadcast.publish(b"w" * 10)
    assert broadcast.held_bytes <= 10


async def test_an_upstream_failure_reaches_players_after_their_data() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    player = broadcast.subscribe()
    broadcast.publish(b"data")
    broadcast.close("engine stalled")
    assert await player.read() == b"data"
    with pytest.raises(BroadcastEnded, match="engine stalled"):
        await player.read()


async def test_a_waiting_reader_wakes_on_publish() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    player = broadcast.subscribe()
    reading = asyncio.create_task(player.read())
    await asyncio.sleep(0)
    assert not reading.done()
    broadcast.publish(b"now")
    assert await asyncio.wait_for(reading, 1) == b"now"


@settings(deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=40),
    st.lists(st.integers(0, 5), min_size=1, max_size=5),
)
def test_every_subscriber_reads_the_exact_byte_sequence(
    chunks: list[bytes], pauses: list[int]
) -> None:
    async def scenario() -> None:
        broadcast = Broadcast(window_bytes=1 << 20)
        subscribers = [broadcast.subscribe() for _ in pauses]

        async def reader(index: int) -> bytes:
            out = bytearray()
            sub = subscribers[index]
            while (data := await sub.read()) is not None:
                out += data
                for _ in range(pauses[index]):
                    await asyncio.sleep(0)
            return bytes(out)

        readers = [asyncio.create_task(reader(i)) for i in range(len(pauses))]
        for chunk in chunks:
            broadcast.publish(chunk)
            await asyncio.sleep(0)
        broadcast.close()
        results = await asyncio.gather(*readers)
        assert all(r == b"".join(chunks) for r in results)

    asyncio.run(scenario())


async def test_a_new_player_starts_at_the_latest_join_point_still_held() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    broadcast.publish(b"old-gop", join_at=0)
    broadcast.publish(b"frames")
    broadcast.publish(b"new-gop", join_at=0)
    broadcast.publish(b"more")
    player = broadcast.subscribe()
    broadcast.close()
    assert await drain(player) == b"new-gopmore"


async def test_a_new_player_starts_inside_a_chunk_at_its_join_point_and_others_get_it_whole() -> (
    None
):
    broadcast = Broadcast(window_bytes=1 << 20)
    watching = broadcast.subscribe()
    broadcast.publish(b"tail-of-gop|new-gop", join_at=12)
    broadcast.publish(b"more")
    joiner = broadcast.subscribe()
    assert await joiner.read() == b"new-gop"
    assert await joiner.read() == b"more"
    assert await watching.read() == b"tail-of-gop|new-gop"  # the stored chunk, not a copy
    broadcast.close()
    assert await drain(watching) == b"more"
    assert await drain(joiner) == b""


async def test_a_clean_player_of_a_fresh_stream_gets_keep_alive_only_until_a_join_point() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    plain = broadcast.subscribe()
    clean = broadcast.subscribe(clean=True)
    broadcast.publish(NULL_PACKET)
    broadcast.publish(b"mid-gop")
    assert clean.take() == NULL_PACKET
    assert clean.take() == b"", "the stream's first bytes before a join point are not for it"
    waiting = asyncio.create_task(clean.follow(lambda chunk: True))
    await asyncio.sleep(0)
    assert not waiting.done(), "it waits for the next chunk instead of spinning"
    broadcast.publish(b"frames|gop", join_at=7)
    await waiting
    broadcast.publish(b"more")
    broadcast.close()
    assert await drain(clean) == b"gopmore"
    assert await drain(plain) == NULL_PACKET + b"mid-gopframes|gopmore"


async def test_a_clean_player_starts_at_a_join_point_already_held_like_any_new_player() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    broadcast.publish(b"gop", join_at=0)
    broadcast.publish(b"frames")
    clean = broadcast.subscribe(clean=True)
    broadcast.close()
    assert await drain(clean) == b"gopframes"


async def test_the_join_point_is_held_even_when_every_player_has_read_it() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    first = broadcast.subscribe()
    broadcast.publish(b"gop", join_at=0)
    broadcast.publish(b"frames")
    assert await first.read() == b"gop"
    assert await first.read() == b"frames"
    assert broadcast.held_bytes == len(b"gopframes")
    late = broadcast.subscribe()
    broadcast.close()
    assert await drain(late) == b"gopframes"


async def test_a_join_point_beyond_the_window_is_forgotten() -> None:
    broadcast = Broadcast(window_bytes=10)
    broadcast.publish(b"gop", join_at=0)
    broadcast.publish(b"x" * 20)
    player = broadcast.subscribe()
    broadcast.publish(b"live")
    broadcast.close()
    assert await drain(player) == b"live"


class _Socket:
    """A follower's push that takes chunks while it has room, like a player's socket."""

    def __init__(self, room: int = 1 << 30) -> None:
        self.room = room
        self.got = bytearray()

    def push(self, chunk: bytes) -> bool:
        if len(chunk) > self.room:
            return False
        self.room -= len(chunk)
        self.got += chunk
        return True


async def _player(subscriber: Subscriber, sock: _Socket, refill: int) -> bytes:
    """A player as the HTTP layer runs one: read while behind, follow at the live edge; each time
    its socket refuses a chunk it gets ``refill`` more room once it caught up by reading."""
    while (data := subscriber.take()) is not None:
        if data:
            sock.got += data
            await asyncio.sleep(0)
            continue
        sock.room += refill
        await subscriber.follow(sock.push)
    return bytes(sock.got)


async def test_followers_get_each_published_chunk_without_reading() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    sockets = [_Socket() for _ in range(3)]
    players = [asyncio.create_task(_player(broadcast.subscribe(), s, 0)) for s in sockets]
    await asyncio.sleep(0)
    assert broadcast.follower_count == 3
    broadcast.publish(b"one")
    broadcast.publish(b"two")
    assert all(bytes(s.got) == b"onetwo" for s in sockets)  # handed over by publish itself
    broadcast.close()
    assert await asyncio.gather(*players) == [b"onetwo"] * 3


async def test_a_follower_whose_socket_is_full_reads_the_refused_chunk_later() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    sock = _Socket(room=4)
    subscriber = broadcast.subscribe()
    following = asyncio.create_task(subscriber.follow(sock.push))
    await asyncio.sleep(0)
    broadcast.publish(b"abcd")
    broadcast.publish(b"efgh")  # refused: no room
    await asyncio.wait_for(following, 1)
    assert broadcast.follower_count == 0
    assert subscriber.take() == b"efgh"
    assert subscriber.take() == b""


async def test_a_follower_that_leaves_is_released_and_holds_nothing() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    subscriber = broadcast.subscribe()
    following = asyncio.create_task(subscriber.follow(_Socket().push))
    await asyncio.sleep(0)
    subscriber.close()
    await asyncio.wait_for(following, 1)
    assert broadcast.subscriber_count == 0
    broadcast.publish(b"x" * 10)
    broadcast.publish(b"y" * 10)
    assert broadcast.held_bytes <= 10


async def test_a_subscriber_behind_the_live_edge_cannot_follow_yet() -> None:
    broadcast = Broadcast(window_bytes=1 << 20)
    broadcast.publish(b"gop", join_at=0)
    subscriber = broadcast.subscribe()
    await asyncio.wait_for(subscriber.follow(_Socket().push), 1)  # returns at once
    assert subscriber.take() == b"gop"


@settings(deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=40),
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 600)), min_size=1, max_size=6),
)
def test_followers_and_readers_mixed_get_the_exact_byte_sequence(
    chunks: list[bytes], rooms: list[tuple[int, int]]
) -> None:
    async def scenario() -> None:
        broadcast = Broadcast(window_bytes=1 << 20)
        players = [
            asyncio.create_task(_player(broadcast.subscribe(), _Socket(room), refill))
            for room, refill in rooms
        ]
        for chunk in chunks:
            broadcast.publish(chunk)
            await asyncio.sleep(0)
        broadcast.close()
        assert await asyncio.gather(*players) == [b"".join(chunks)] * len(rooms)

    asyncio.run(scenario())
