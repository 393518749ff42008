"""Fuzzing what the gateway reads from engines: arbitrary bytes, arbitrary JSON (deep nesting, huge
numbers, NaN, wrong types) and truncated answers never raise anything but the client's own typed
error, and the stat figures are read from any JSON object without raising at all."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acestream_gateway.engines.answers import (
    MAX_ANSWER_BYTES,
    MAX_ANSWER_DEPTH,
    EngineError,
    parse_answer,
    session_from_answer,
    stat_from_answer,
    status_from_answer,
    stop_confirmed,
    version_from_answer,
)
from acestream_gateway.engines.model import EngineAddress
from acestream_gateway.ops.stats import figures_from_stat

ADDRESS = EngineAddress("127.0.0.1", 6878)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
# Answers shaped like the engine's, with every field free to be anything.
answer_keys = st.sampled_from(
    [
        "response",
        "result",
        "error",
        "playback_url",
        "stat_url",
        "command_url",
        "infohash",
        "playback_session_id",
        "is_live",
        "version",
        "status",
        "peers",
        "speed_down",
        "speedDown",
        "speed_up",
        "speedUp",
        "downloaded",
        "uploaded",
        "livepos",
    ]
)
shaped = st.recursive(
    scalars | st.sampled_from(["/ace/x", "http://h/ace/r?a=1", "http://[::1", "//x/y", ""]),
    lambda inner: st.dictionaries(answer_keys, inner, max_size=6) | st.lists(inner, max_size=3),
    max_leaves=25,
)


def read_everything(body: dict[str, Any]) -> None:
    """What the client does with a parsed answer, call by call: each raises only EngineError."""
    for read in (
        lambda: session_from_answer(ADDRESS, "pid", body),
        lambda: stop_confirmed(body),
        lambda: version_from_answer(body),
        lambda: status_from_answer(body),
    ):
        with contextlib.suppress(EngineError):
            read()
    stat = stat_from_answer(body)
    if stat is not None:
        figures_from_stat("session", stat, 0.0)


def through_the_client(raw: bytes) -> None:
    try:
        body = parse_answer(raw)
    except EngineError:
        return
    read_everything(body)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_an_answer_or_the_clients_error(raw: bytes) -> None:
    through_the_client(raw)


@given(json_values)
def test_arbitrary_json_is_an_answer_or_the_clients_error(value: Any) -> None:
    through_the_client(json.dumps(value).encode())


@given(st.dictionaries(answer_keys, shaped, max_size=6))
def test_answers_shaped_like_the_engines_with_wrong_types_are_read_or_refused(
    body: dict[str, Any],
) -> None:
    through_the_client(json.dumps(body).encode())


@given(st.dictionaries(answer_keys, shaped, max_size=6), st.data())
def test_truncated_answers_are_the_clients_error(body: dict[str, Any], data: st.DataObject) -> None:
    raw = json.dumps(body).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    through_the_client(raw[:cut])


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=30)
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":', '{"response":']))
def test_nesting_of_any_depth_is_refused_past_the_limit(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"a":': "}", '{"response":': "}"}[opener]
    raw = (opener * depth + "1" + closer * depth).encode()
    if opener == "[":
        raw = b'{"r":' + raw + b"}"
        depth += 1
    if len(raw) > MAX_ANSWER_BYTES or depth > MAX_ANSWER_DEPTH:
        with pytest.raises(EngineError):
            parse_answer(raw)
    else:
        read_everything(parse_answer(raw))


@given(st.integers(min_value=0, max_value=20_000).map(lambda n: "9" * n))
def test_huge_numbers_are_read_or_refused(digits: str) -> None:
    through_the_client(
        f'{{"response": {{"peers": {digits or 0}, "speed_down": "{digits}"}}}}'.encode()
    )


def test_nan_and_infinite_figures_are_no_figure() -> None:
    body = parse_answer(
        b'{"response": {"peers": NaN, "speed_down": Infinity, "uploaded": "-Infinity"}}'
    )
    stat = stat_from_answer(body)
    assert stat is not None
    figures = figures_from_stat("s", stat, 0.0)
    assert (figures.peers, figures.speed_down_kbps, figures.uploaded) == (None, None, None)


def test_the_depth_limit_is_exact() -> None:
    def nested(levels: int) -> bytes:
        return ('{"a":' * levels + "1" + "}" * levels).encode()

    assert parse_answer(nested(MAX_ANSWER_DEPTH))
    with pytest.raises(EngineError, match="nested too deeply"):
        parse_answer(nested(MAX_ANSWER_DEPTH + 1))
