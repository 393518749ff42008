"""Gathering an engine's pieces into blocks: nothing lost or reordered, the latest join point of
each block found where it was, and no byte held back longer than the delay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.streaming.coalesce import Block, Coalescer

pieces_in_time = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=3000),
        st.floats(0, 0.2),  # seconds since the previous piece
        st.one_of(st.none(), st.integers(0, 2999)),  # a join point's offset in the piece
    ),
    max_size=60,
)


def _run(pieces: list[tuple[bytes, float, int | None]], coalescer: Coalescer) -> list[Block]:
    """Feed the pieces at their times, firing the deadline whenever it passes in between."""
    out: list[Block | None] = []
    now = 0.0
    for data, gap, join_at in pieces:
        arrival = now + gap
        deadline = coalescer.deadline
        if deadline is not None and deadline <= arrival:
            out.append(coalescer.due(deadline))
        now = arrival
        out.append(
            coalescer.add(data, now, join_at=None if join_at is None else join_at % len(data))
        )
    out.append(coalescer.flush())
    return [b for b in out if b is not None]


@given(pieces_in_time)
def test_blocks_carry_every_byte_in_order(pieces: list[tuple[bytes, float, int | None]]) -> None:
    blocks = _run(pieces, Coalescer(max_bytes=4096, max_delay_s=0.09))
    assert b"".join(b.data for b in blocks) == b"".join(p[0] for p in pieces)
    assert all(b.data for b in blocks)


@given(pieces_in_time)
def test_each_block_knows_its_latest_join_point(
    pieces: list[tuple[bytes, float, int | None]],
) -> None:
    blocks = _run(pieces, Coalescer(max_bytes=4096, max_delay_s=0.09))
    joins, offset = [], 0
    for data, _, join_at in pieces:
        if join_at is not None:
            joins.append(offset + join_at % len(data))
        offset += len(data)
    start = 0
    for block in blocks:
        end = start + len(block.data)
        inside = [j for j in joins if start <= j < end]
        assert block.join_at == (inside[-1] - start if inside else None)
        start = end


@given(pieces_in_time)
def test_no_byte_waits_longer_than_the_delay(pieces: list[tuple[bytes, float, int | None]]) -> None:
    coalescer = Coalescer(max_bytes=4096, max_delay_s=0.09)
    now, waiting_since = 0.0, None
    for data, gap, _ in pieces:
        deadline = coalescer.deadline
        if deadline is not None and deadline <= now + gap:
            assert coalescer.due(deadline) is not None
            assert waiting_since is not None
            assert deadline - waiting_since <= 0.09 + 1e-9
            waiting_since = None
        now += gap
        if coalescer.add(data, now) is not None:
            waiting_since = None
        elif waiting_since is None:
            waiting_since = now


@given(st.lists(st.binary(min_size=1, max_size=3000), max_size=60))
def test_pieces_that_come_together_go_out_as_blocks_of_at_least_the_size(
    pieces: list[bytes],
) -> None:
    coalescer = Coalescer(max_bytes=4096, max_delay_s=0.09)
    blocks = [b for p in pieces if (b := coalescer.add(p, 0.0)) is not None]
    # The very first piece goes out alone: nothing is known yet of how often pieces come.
    assert all(len(b.data) >= 4096 for b in blocks[1:])
    assert coalescer.pending_bytes < 4096


def test_a_full_block_goes_out_at_once_and_small_pieces_wait_for_the_delay() -> None:
    coalescer = Coalescer(max_bytes=1000, max_delay_s=0.09)
    assert coalescer.add(b"a" * 10, 0.0) == Block(b"a" * 10)  # no gap known: nothing to wait for
    assert coalescer.add(b"b" * 10, 0.02, join_at=4) is None
    assert coalescer.deadline == 0.11  # from the oldest pending byte
    assert coalescer.add(b"c" * 990, 0.04) == Block(b"b" * 10 + b"c" * 990, join_at=4)
    assert coalescer.deadline is None
    # Regular pieces every 20 ms: the block goes with the last piece that can make its deadline.
    for at in (0.06, 0.08, 0.10, 0.12):
        assert coalescer.add(b"d", at) is None
    assert coalescer.add(b"e", 0.14) == Block(b"dddde")
    # The pieces stop: the deadline sends what is pending.
    assert coalescer.add(b"f", 0.16) is None
    assert coalescer.due(0.2) is None
    assert coalescer.due(0.25) == Block(b"f")
    assert coalescer.flush() is None


def test_an_engine_writing_a_block_every_100_ms_has_each_sent_as_it_comes() -> None:
    coalescer = Coalescer(max_bytes=256 * 1024, max_delay_s=0.095)
    sent = [coalescer.add(bytes([i]) * 50_000, i * 0.1) for i in range(10)]
    assert sent == [Block(bytes([i]) * 50_000) for i in range(10)]
