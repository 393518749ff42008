"""Why provisioning is blocked: one reason wins, ETAs count down, refusals carry a Retry-After."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.engines.provisioning import Blocked, BlockedReason, Provisioning

# The reason an operator must act on first comes first.
ORDER = [
    BlockedReason.DOCKER_UNAVAILABLE,
    BlockedReason.VPN_DISCONNECTED,
    BlockedReason.NO_SWARM_NODE,
    BlockedReason.IMAGE_UNAVAILABLE,
    BlockedReason.CIRCUIT_BREAKER,
    BlockedReason.MAX_CAPACITY,
]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


reasons = st.sampled_from(list(BlockedReason))
messages = st.sampled_from(["docker is gone", "image missing", "three failures"])
etas = st.none() | st.floats(0, 3600, allow_nan=False)
operations = st.lists(
    st.tuples(st.just("set"), reasons, messages, etas)
    | st.tuples(st.just("lift"), reasons, st.none(), st.none())
    | st.tuples(st.just("tick"), st.none(), st.none(), st.floats(0, 100, allow_nan=False)),
    max_size=40,
)


def test_the_reason_codes_are_the_orchestrators_and_one_of_the_gateways_own() -> None:
    assert {r.value for r in BlockedReason} == {
        "circuit_breaker",
        "max_capacity",
        "docker_unavailable",
        "image_unavailable",
        "vpn_disconnected",
        "no_swarm_node",  # the orchestrator runs no Swarm
    }
    assert set(ORDER) == set(BlockedReason)


@given(operations)
def test_the_block_that_matters_most_wins_and_set_and_lift_tell_whether_they_changed_it(
    ops: list[tuple[str, BlockedReason | None, str | None, float | None]],
) -> None:
    clock = Clock()
    provisioning = Provisioning(clock)
    model: dict[BlockedReason, tuple[str, float | None]] = {}
    for op, reason, message, value in ops:
        version = provisioning.version
        if op == "set":
            assert reason is not None
            assert message is not None
            old = model.get(reason)
            until = None if value is None else clock.now + value
            news = old is None or old[0] != message
            assert provisioning.set(reason, message, value) is news
            model[reason] = (message, until)
            assert provisioning.version == version + (old != (message, until))
        elif op == "lift":
            assert reason is not None
            assert provisioning.lift(reason) is (reason in model)
            assert provisioning.version == version + (model.pop(reason, None) is not None)
        else:
            assert value is not None
            clock.now += value
            assert provisioning.version == version
        expected = [Blocked(r, *model[r]) for r in ORDER if r in model]
        assert provisioning.blocks() == expected
        assert provisioning.current() == (expected[0] if expected else None)


def test_docker_gone_outranks_every_other_reason_and_lifting_it_shows_the_next() -> None:
    provisioning = Provisioning(Clock())
    provisioning.set(BlockedReason.MAX_CAPACITY, "all engines busy")
    provisioning.set(BlockedReason.CIRCUIT_BREAKER, "three failures", 10)
    provisioning.set(BlockedReason.DOCKER_UNAVAILABLE, "docker is gone")
    assert provisioning.current() == Blocked(BlockedReason.DOCKER_UNAVAILABLE, "docker is gone")
    assert provisioning.lift(BlockedReason.DOCKER_UNAVAILABLE)
    assert not provisioning.lift(BlockedReason.DOCKER_UNAVAILABLE), "nothing left to lift"
    current = provisioning.current()
    assert current is not None
    assert current.reason is BlockedReason.CIRCUIT_BREAKER


def test_a_repeated_block_is_no_news_but_keeps_its_new_eta() -> None:
    clock = Clock(100.0)
    provisioning = Provisioning(clock)
    assert provisioning.set(BlockedReason.CIRCUIT_BREAKER, "three failures", 10)
    clock.now = 105.0
    assert not provisioning.set(BlockedReason.CIRCUIT_BREAKER, "three failures", 20)
    current = provisioning.current()
    assert current is not None
    assert current.eta_s(clock.now) == 20
    assert provisioning.set(BlockedReason.CIRCUIT_BREAKER, "four failures", 20)


def test_an_eta_counts_down_with_the_clock_and_stops_at_zero() -> None:
    clock = Clock(50.0)
    provisioning = Provisioning(clock)
    provisioning.set(BlockedReason.CIRCUIT_BREAKER, "three failures", 8)
    block = provisioning.current()
    assert block is not None
    assert block.eta_s(clock.now) == 8
    assert provisioning.retry_after_s(block) == 8
    clock.now = 55.5
    assert block.eta_s(clock.now) == 2.5
    assert provisioning.retry_after_s(block) == 3, "rounded up"
    clock.now = 57.9
    assert provisioning.retry_after_s(block) == 1
    clock.now = 70.0
    assert block.eta_s(clock.now) == 0
    assert provisioning.retry_after_s(block) == 1, "due: look again in a second, never 0"


def test_a_block_without_eta_has_none_and_gets_the_default_retry() -> None:
    clock = Clock()
    provisioning = Provisioning(clock)
    provisioning.set(BlockedReason.DOCKER_UNAVAILABLE, "docker is gone")
    block = provisioning.current()
    assert block is not None
    assert block.eta_s(clock.now) is None
    clock.now += 1000
    assert provisioning.retry_after_s(block) == 30


@given(st.floats(0, 86400, allow_nan=False), st.floats(0, 86400, allow_nan=False))
def test_retry_after_is_a_whole_second_count_of_at_least_one_that_covers_the_eta(
    eta: float, elapsed: float
) -> None:
    clock = Clock(12345.0)
    provisioning = Provisioning(clock)
    provisioning.set(BlockedReason.IMAGE_UNAVAILABLE, "image missing", eta)
    clock.now += elapsed
    block = provisioning.current()
    assert block is not None
    remaining = block.eta_s(clock.now)
    assert remaining is not None
    assert 0 <= remaining <= eta + 1e-6
    retry = provisioning.retry_after_s(block)
    assert retry == int(retry) >= 1
    assert retry >= remaining
    assert retry == max(1, math.ceil(remaining))
