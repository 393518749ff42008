"""Which source a lineup channel's players play: one choice for all of them, a failure marked once
however many players report it, the list gone through once per failure, the preferred source
again only after the channel stopped, and tuners counted by channels with players."""

from __future__ import annotations

import asyncio

from acestream_gateway.engines.model import ContentRef, InputKind
from acestream_gateway.metrics import Metrics
from acestream_gateway.ops.lineup.sources import ChannelSources
from acestream_gateway.streaming.station import SourceFailure, Stations

A, B, C = (ContentRef(InputKind.CONTENT_ID, x * 40) for x in "abc")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failovers(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "acestream_gateway_source_failovers_total", {"reason": reason}
    )
    return value or 0.0


async def test_players_of_a_channel_share_one_choice_and_a_failure_is_marked_once() -> None:
    stations = Stations(Metrics())
    sources = ChannelSources((A, B, C), retry_s=300, clock=Clock())
    async with stations.tune("k", 1, "One", sources) as one:
        async with stations.tune("k", 1, "One", sources) as two:
            assert one is two
            assert await stations.source(one, None) == A
            assert await stations.source(two, None) == A
            stations.playing(one, A)
            reports = await asyncio.gather(
                *(stations.source(one, A, SourceFailure.ENDED) for _ in range(3))
            )
            assert reports == [B, B, B]
            assert one.failovers == 1
            assert failovers(stations.metrics, "ended") == 1
            assert [v.state.value for v in sources.views()] == ["bad", "untried", "untried"]


async def test_the_list_is_gone_through_once_per_failure_even_when_sources_retry_at_once() -> None:
    stations = Stations(Metrics())
    sources = ChannelSources((A, B), retry_s=0, clock=Clock())
    tried: set[ContentRef] = set()
    async with stations.tune("k", 1, "One", sources) as station:
        chosen = []
        failed = None
        while (
            ref := await stations.source(station, failed, SourceFailure.REFUSED, tried)
        ) is not None:
            tried.add(ref)
            chosen.append(ref)
            failed = ref
            assert len(chosen) <= 2, chosen
        assert chosen == [A, B]
        assert failovers(stations.metrics, "refused") == 2


async def test_a_channel_goes_back_to_its_preferred_source_only_once_it_stopped() -> None:
    clock = Clock()
    stations = Stations(Metrics())
    sources = ChannelSources((A, B), retry_s=10, clock=clock)
    async with stations.tune("k", 1, "One", sources) as station:
        await stations.source(station, None)
        assert await stations.source(station, A, SourceFailure.ENDED) == B
        stations.playing(station, B)
        clock.now += 60  # A is no longer bad, but the channel plays B
        assert await stations.source(station, None) == B
        assert sources.current == B
    assert sources.current is None
    async with stations.tune("k", 1, "One", sources) as station:
        assert await stations.source(station, None) == A


async def test_every_source_bad_leaves_nothing_to_play() -> None:
    stations = Stations(Metrics())
    sources = ChannelSources((A,), retry_s=300, clock=Clock())
    async with stations.tune("k", 1, "One", sources) as station:
        assert await stations.source(station, None) == A
        assert await stations.source(station, A, SourceFailure.NO_START) is None
        assert not sources.working
        assert station.describe()["working"] is False


async def test_tuners_are_channels_with_players_attached() -> None:
    stations = Stations(Metrics())
    one = ChannelSources((A,), retry_s=300)
    two = ChannelSources((B,), retry_s=300)
    assert stations.tuned() == 0
    async with stations.tune("1", 1, "One", one), stations.tune("1", 1, "One", one):
        assert stations.tuned() == 1
        async with stations.tune("2", 2, "Two", two):
            assert stations.tuned() == 2
            assert stations.is_tuned("2")
        assert not stations.is_tuned("2")
    assert stations.tuned() == 0
    assert stations.all() == []
