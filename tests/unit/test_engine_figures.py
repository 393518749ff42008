"""Engine stat answers read whatever the engine version's spelling (strings, numbers, camelCase)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.ops.stats import figures_from_stat


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**5),
    st.booleans(),
    st.booleans(),
)
def test_speeds_and_peers_read_as_numbers_or_strings_in_either_spelling(
    peers: int, speed: int, as_text: bool, camel: bool
) -> None:
    def value(n: int) -> object:
        return str(n) if as_text else n

    speeds = {"speedDown": value(speed), "speedUp": value(speed // 2)}
    if not camel:
        speeds = {"speed_down": value(speed), "speed_up": value(speed // 2)}
    stat = {"status": "dl", "peers": value(peers), **speeds, "livepos": {"pos": "12"}}
    figures = figures_from_stat("s1", stat, 5.0)
    assert figures.peers == peers
    assert figures.speed_down_kbps == speed
    assert figures.speed_up_kbps == speed // 2
    assert figures.livepos == {"pos": "12"}
    assert figures.as_json()["status"] == "dl"


@given(st.dictionaries(st.text(max_size=12), st.none() | st.text() | st.booleans(), max_size=6))
def test_odd_answers_give_empty_figures_rather_than_an_error(stat: dict[str, object]) -> None:
    figures = figures_from_stat("s1", stat, 5.0)
    assert figures.peers is None or isinstance(figures.peers, int)
    assert figures.speed_down_kbps is None or isinstance(figures.speed_down_kbps, int)


def test_figures_that_are_not_finite_numbers_are_left_out() -> None:
    odds: list[object] = ["inf", "nan", "-inf", float("inf"), "12abc", [], {}]
    for odd in odds:
        assert figures_from_stat("s1", {"peers": odd}, 0.0).peers is None
