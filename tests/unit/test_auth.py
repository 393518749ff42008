"""The API key decision: missing, wrong or right, whichever header carries it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.ops.auth import MalformedKey, Verdict, decide, presented_key

keys = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1)


@given(keys, keys)
def test_only_the_configured_key_is_allowed(expected: str, presented: str) -> None:
    verdict = decide(expected, presented)
    assert verdict is (Verdict.ALLOWED if presented == expected else Verdict.WRONG)


@given(keys)
def test_no_key_presented_is_missing_and_no_key_configured_allows_all(key: str) -> None:
    assert decide(key, None) is Verdict.MISSING
    assert decide(None, None) is Verdict.ALLOWED
    assert decide(None, key) is Verdict.ALLOWED


@given(keys)
def test_the_key_comes_as_a_bearer_token_or_an_x_api_key(key: str) -> None:
    assert presented_key({"Authorization": f"Bearer {key}"}) == key
    assert presented_key({"Authorization": f"bearer {key}"}) == key
    assert presented_key({"X-API-Key": key}) == key
    assert presented_key({"Authorization": f"Basic {key}"}) is None
    assert presented_key({}) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "\udcff\udcfe"},
        {"Authorization": "Bearer k\udcffey"},
    ],
)
def test_a_key_header_that_is_not_utf8_is_malformed_not_an_error(headers: dict[str, str]) -> None:
    with pytest.raises(MalformedKey):
        presented_key(headers)


def test_a_string_that_is_not_utf8_compares_as_wrong_and_never_raises() -> None:
    assert decide("s3cret", "s3\udcffcret") is Verdict.WRONG
    assert decide("s3cret", "s3cret") is Verdict.ALLOWED
