"""Gathering an engine's pieces into blocks: nothing lost or reordered, join points start blocks,
and no byte is held back longer than the delay."""

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
    out: list[Block] = []
    now = 0.0
    for data, gap, join_at in pieces:
        arrival = now + gap
        deadline = coalescer.deadline
        if deadline is not None and deadline <= arrival:
            out += coalescer.due(deadline)
        now = arrival
        out += coalescer.add(data, now, join_at=None if join_at is None else join_at % len(data))
    return out + coalescer.flush(now)


@given(pieces_in_time)
def test_blocks_carry_every_byte_in_order(pieces: list[tuple[bytes, float, int | None]]) -> None:
    blocks = _run(pieces, Coalescer(max_bytes=4096, max_delay_s=0.09))
    assert b"".join(b.data for b in blocks) == b"".join(p[0] for p in pieces)
    assert all(b.data for b in blocks)


@given(pieces_in_time)
def test_every_join_point_starts_a_block_of_its_own(
    pieces: list[tuple[bytes, float, int | None]],
) -> None:
    blocks = _run(pieces, Coalescer(max_bytes=4096, max_delay_s=0.09))
    starts, offset = set(), 0
    for block in blocks:
        if block.join_point:
            starts.add(offset)
        offset += len(block.data)
    expected, offset = set(), 0
    for data, _, join_at in pieces:
        if join_at is not None:
            expected.add(offset + join_at % len(data))
        offset += len(data)
    assert starts == expected


@given(pieces_in_time)
def test_no_byte_waits_longer_than_the_delay(pieces: list[tuple[bytes, float, int | None]]) -> None:
    coalescer = Coalescer(max_bytes=4096, max_delay_s=0.09)
    now, waiting_since = 0.0, None
    for data, gap, _ in pieces:
        deadline = coalescer.deadline
        if deadline is not None and deadline <= now + gap:
            assert coalescer.due(deadline)
            assert waiting_since is not None
            assert deadline - waiting_since <= 0.09 + 1e-9
            waiting_since = None
        now += gap
        if coalescer.add(data, now):
            waiting_since = None
        elif waiting_since is None:
            waiting_since = now


def test_a_full_block_goes_out_at_once_and_small_pieces_wait_for_the_delay() -> None:
    coalescer = Coalescer(max_bytes=1000, max_delay_s=0.09)
    assert coalescer.add(b"a" * 10, 0.0) == [Block(b"a" * 10)]  # nothing went out lately
    assert coalescer.add(b"b" * 10, 0.02) == []
    assert coalescer.deadline == 0.09
    assert coalescer.add(b"c" * 990, 0.04) == [Block(b"b" * 10 + b"c" * 990)]
    assert coalescer.add(b"d" * 10, 0.06) == []
    assert coalescer.due(0.1) == []  # the deadline moved with the last block
    assert coalescer.due(0.13) == [Block(b"d" * 10)]
