"""The failover splice: players already watching continue at program tables and a keyframe.

Streams are built from packets of a few kinds and fed to the splicer in arbitrary packet-aligned
reads; a model over the packets says where the splice must land, whatever the reads.
"""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from acestream_gateway.streaming.mpegts import (
    PACKET_SIZE,
    SYNC_BYTE,
    JoinPoints,
    Splicer,
    TsAligner,
    is_random_access,
)

LOOKAHEAD = 8  # packets after a PAT within which its keyframe must start


def _packet(header: bytes, body: bytes = b"") -> bytes:
    return header + body + b"\xaa" * (PACKET_SIZE - len(header) - len(body))


# Each kind of packet a stream is made of; only "key" flags a random access point.
PACKETS = {
    "pat": _packet(bytes([SYNC_BYTE, 0x40, 0x00, 0x10])),
    "pmt": _packet(bytes([SYNC_BYTE, 0x50, 0x00, 0x10])),
    "key": _packet(bytes([SYNC_BYTE, 0x41, 0x00, 0x30, 7, 0x50]), bytes(6)),
    "frame": _packet(bytes([SYNC_BYTE, 0x01, 0x00, 0x10])),
    # an adaptation field without the random_access_indicator
    "pcr": _packet(bytes([SYNC_BYTE, 0x01, 0x00, 0x30, 7, 0x10]), bytes(6)),
    # an empty adaptation field: the byte after it is payload, not flags
    "stuffed": _packet(bytes([SYNC_BYTE, 0x01, 0x00, 0x30, 0, 0x40])),
    # the PAT header's bytes inside a payload, off a packet boundary
    "fake_pat": _packet(bytes([SYNC_BYTE, 0x01, 0x00, 0x10]), bytes([SYNC_BYTE, 0x40, 0x00])),
}
KINDS = list(PACKETS)
NO_KEY = [kind for kind in KINDS if kind != "key"]
NO_PAT = [kind for kind in KINDS if kind != "pat"]


def build(kinds: list[str]) -> bytes:
    return b"".join(PACKETS[kind] for kind in kinds)


def expected_splice(kinds: list[str], patience: int) -> int | None:
    """The packet index the splice lands on, or None while it cannot tell (the stream ended).

    The first PAT with a keyframe within ``LOOKAHEAD`` packets; from ``patience`` bytes on, any
    PAT; from twice that on, wherever the stream is.
    """
    give_up = math.ceil(2 * patience / PACKET_SIZE)
    for index, kind in enumerate(kinds):
        if index >= give_up:
            return index
        if kind == "pat":
            window = kinds[index : index + LOOKAHEAD]
            if index * PACKET_SIZE >= patience or "key" in window:
                return index
            if len(window) < LOOKAHEAD:
                return None  # its keyframe may still come
    return give_up if give_up == len(kinds) else None


def feed(splicer: Splicer, stream: bytes, reads: list[int]) -> bytes:
    """Feed ``stream`` in reads of ``reads`` packets each (the rest in one last read), checking
    after every read that what the splicer holds back stays within ``LOOKAHEAD`` packets."""
    out = bytearray()
    pos = 0
    sizes = [n * PACKET_SIZE for n in reads] + [len(stream)]
    for size in sizes:
        piece = stream[pos : pos + size]
        pos += len(piece)
        published = splicer.feed(piece)
        assert len(published) % PACKET_SIZE == 0
        out += published
        held = pos - splicer.dropped - len(out)
        assert 0 <= held <= LOOKAHEAD * PACKET_SIZE
        if splicer.done:
            assert held == 0
    return bytes(out)


streams = st.lists(st.sampled_from(KINDS), max_size=60)
reads = st.lists(st.integers(0, 24), max_size=30)
patiences = st.integers(0, 70 * PACKET_SIZE)


def check(kinds: list[str], patience: int, read_sizes: list[int]) -> None:
    stream = build(kinds)
    splicer = Splicer(patience_bytes=patience)
    out = feed(splicer, stream, read_sizes)
    at = expected_splice(kinds, patience)
    if at is None:
        assert out == b""
        assert not splicer.done
        assert len(stream) - splicer.dropped <= LOOKAHEAD * PACKET_SIZE
        return
    assert splicer.done
    assert splicer.dropped == at * PACKET_SIZE
    assert out == stream[at * PACKET_SIZE :]


@settings(max_examples=400)
@given(streams, patiences, reads)
@example(["frame"] * 12 + ["pat", "pmt", "frame"], 5 * PACKET_SIZE, [15])
@example(["pat", "frame", "pat", "key"], PACKET_SIZE, [4])
def test_the_splice_lands_where_the_model_says_whatever_the_reads(
    kinds: list[str], patience: int, read_sizes: list[int]
) -> None:
    check(kinds, patience, read_sizes)


@given(streams, reads)
def test_with_patience_the_splice_is_the_first_pat_followed_by_a_keyframe(
    kinds: list[str], read_sizes: list[int]
) -> None:
    stream = build(kinds)
    splicer = Splicer()  # the default patience is far beyond these streams
    out = feed(splicer, stream, read_sizes)
    pats = [
        i for i, kind in enumerate(kinds) if kind == "pat" and "key" in kinds[i : i + LOOKAHEAD]
    ]
    if not pats:
        assert out == b""
        return
    assert out == stream[pats[0] * PACKET_SIZE :]
    assert splicer.dropped == pats[0] * PACKET_SIZE
    assert out.startswith(PACKETS["pat"])
    assert any(is_random_access(out, at) for at in range(0, LOOKAHEAD * PACKET_SIZE, PACKET_SIZE))


@given(st.lists(st.sampled_from(NO_KEY), max_size=60), st.integers(0, 40), reads)
def test_a_stream_without_keyframes_is_spliced_at_the_first_pat_after_the_patience(
    kinds: list[str], patience_packets: int, read_sizes: list[int]
) -> None:
    patience = patience_packets * PACKET_SIZE
    stream = build(kinds)
    splicer = Splicer(patience_bytes=patience)
    out = feed(splicer, stream, read_sizes)
    pats = [i for i, kind in enumerate(kinds) if kind == "pat" and i >= patience_packets]
    # an earlier PAT is waited on while its keyframe may still come: let the stream go on
    if pats and pats[0] < 2 * patience_packets and len(kinds) >= pats[0] + LOOKAHEAD:
        assert out == stream[pats[0] * PACKET_SIZE :]
        assert splicer.dropped == pats[0] * PACKET_SIZE


@given(st.lists(st.sampled_from(NO_PAT), max_size=60), st.integers(0, 40), reads)
def test_a_stream_without_pat_passes_unchanged_after_twice_the_patience(
    kinds: list[str], patience_packets: int, read_sizes: list[int]
) -> None:
    patience = patience_packets * PACKET_SIZE
    stream = build(kinds)
    splicer = Splicer(patience_bytes=patience)
    out = feed(splicer, stream, read_sizes)
    if len(kinds) >= 2 * patience_packets:
        assert splicer.done
        assert out == stream[2 * patience :]
        assert splicer.dropped == 2 * patience
    else:
        assert out == b""


def test_once_spliced_everything_passes_unchanged() -> None:
    splicer = Splicer()
    assert splicer.feed(build(["frame", "pat", "pmt", "key"])) == build(["pat", "pmt", "key"])
    later = build(["frame", "pat", "frame"])
    assert splicer.feed(later) == later
    assert splicer.feed(b"") == b""
    assert splicer.dropped == PACKET_SIZE


def test_a_keyframe_in_the_next_read_is_waited_for() -> None:
    splicer = Splicer()
    assert splicer.feed(build(["frame", "pat", "pmt"])) == b""
    assert splicer.feed(build(["frame", "key", "frame"])) == build(
        ["pat", "pmt", "frame", "key", "frame"]
    )
    assert splicer.dropped == PACKET_SIZE


# --- with the aligner in front, as the upstream reader runs them --------------------------------

garbage = st.binary(max_size=300).filter(lambda junk: SYNC_BYTE not in junk)


@given(streams, patiences, garbage, st.lists(st.integers(0, 900), max_size=30))
def test_the_aligner_and_the_splicer_give_the_same_splice_for_any_ragged_reads(
    kinds: list[str], patience: int, junk: bytes, cuts: list[int]
) -> None:
    stream = build(kinds)
    data = junk + stream
    aligner, splicer = TsAligner(), Splicer(patience_bytes=patience)
    out = bytearray()
    pos = 0
    for cut in [*cuts, len(data)]:
        out += splicer.feed(aligner.feed(data[pos : pos + cut]))
        pos += cut
    assert aligner.skipped == len(junk)
    whole = Splicer(patience_bytes=patience)
    assert bytes(out) == whole.feed(stream)
    assert splicer.dropped == whole.dropped


# --- join points for new players ----------------------------------------------------------------


@given(st.lists(streams, min_size=1, max_size=6))
def test_the_join_point_is_the_last_pat_before_a_keyframe_and_falls_back_until_one_is_seen(
    chunks: list[list[str]],
) -> None:
    joins = JoinPoints()
    flagged = False
    for kinds in chunks:
        pats = [i for i, kind in enumerate(kinds) if kind == "pat"]
        with_key = [i for i in pats if "key" in kinds[i : i + LOOKAHEAD]]
        flagged = flagged or bool(with_key)
        if with_key:
            expected: int | None = with_key[-1]
        elif not flagged and pats:
            expected = pats[-1]
        else:
            expected = None
        found = joins.last(build(kinds))
        assert found == (None if expected is None else expected * PACKET_SIZE)
        assert joins.keyframes_flagged == flagged
