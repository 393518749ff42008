"""The task supervisor: every task named, guarded, restarted when it is a loop, and closed."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import itertools
from collections.abc import MutableMapping
from fractions import Fraction
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from acestream_gateway.tasks import Backoff, Supervisor

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def settle() -> None:
    """Let done callbacks scheduled by tasks that just ended run."""
    for _ in range(3):
        await asyncio.sleep(0)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- Backoff ------------------------------------------------------------------------------------

firsts = st.floats(min_value=0.001, max_value=100.0, allow_nan=False, allow_infinity=False)
caps = st.floats(min_value=0.001, max_value=3600.0, allow_nan=False, allow_infinity=False)
steps = st.lists(st.sampled_from(["next", "peek", "reset"]), max_size=80)


def expected_delay(first: float, cap: float, failures: int) -> float:
    """The delay after ``failures`` failures, computed exactly (no float overflow)."""
    return float(min(Fraction(cap), Fraction(first) * 2**failures))


@given(firsts, caps, steps)
def test_backoff_doubles_up_to_its_cap_peek_does_not_count_and_reset_starts_over(
    first: float, cap: float, ops: list[str]
) -> None:
    backoff = Backoff(first_s=first, cap_s=cap)
    failures = 0
    for op in ops:
        if op == "next":
            assert backoff.next() == expected_delay(first, cap, failures)
            failures += 1
        elif op == "peek":
            assert backoff.peek() == expected_delay(first, cap, failures)
        else:
            backoff.reset()
            failures = 0
        assert backoff.failures == failures
    assert backoff.peek() == backoff.peek() == expected_delay(first, cap, failures)


@given(firsts, caps)
def test_backoff_delays_never_shrink_and_never_pass_the_cap(first: float, cap: float) -> None:
    backoff = Backoff(first_s=first, cap_s=cap)
    delays = [backoff.next() for _ in range(40)]
    assert delays == sorted(delays)
    assert all(0 < delay <= cap for delay in delays)
    assert delays[0] == min(first, cap)


@given(st.integers(1000, 3000))
def test_backoff_keeps_its_cap_after_any_number_of_failures(failures: int) -> None:
    """A loop that fails for days (Docker gone overnight) must still get a delay, not a crash."""
    backoff = Backoff(first_s=1.0, cap_s=60.0)
    for _ in range(failures):
        backoff.next()
    assert backoff.peek() == 60.0
    assert backoff.next() == 60.0
    assert backoff.failures == failures + 1
    backoff.reset()
    assert backoff.next() == 1.0


# --- Supervisor: spawn --------------------------------------------------------------------------


async def test_a_task_that_crashes_is_logged_with_its_name_and_owner() -> None:
    supervisor = Supervisor("registry")

    async def broken() -> None:
        raise ValueError("boom")

    with capture_logs() as logs:
        task = supervisor.spawn(broken(), name="channel-abc")
        await asyncio.gather(task, return_exceptions=True)
        await settle()
    [failed] = events(logs, "task_failed")
    assert failed["task"] == "channel-abc"
    assert failed["owner"] == "registry"
    assert failed["log_level"] == "error"
    assert isinstance(failed["exc_info"], ValueError)
    assert isinstance(task.exception(), ValueError), "the result stays the caller's"
    assert len(supervisor) == 0


async def test_a_task_that_ends_well_or_is_cancelled_logs_no_failure() -> None:
    supervisor = Supervisor("app")

    async def fine() -> int:
        return 7

    with capture_logs() as logs:
        done = supervisor.spawn(fine(), name="fine")
        stuck = supervisor.spawn(asyncio.Event().wait(), name="stuck")
        assert supervisor.names == ["fine", "stuck"]
        assert await done == 7
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
        await settle()
    assert events(logs, "task_failed") == []
    assert len(supervisor) == 0


async def test_tasks_start_in_a_fresh_context_unless_told_otherwise() -> None:
    supervisor = Supervisor("registry")
    request_id.set("r1")
    structlog.contextvars.bind_contextvars(request_id="r1")

    async def seen() -> tuple[str, dict[str, Any]]:
        return request_id.get(), structlog.contextvars.get_contextvars()

    try:
        assert await supervisor.spawn(seen(), name="fresh") == ("none", {})
        shared = await supervisor.spawn(seen(), name="shared", fresh_context=False)
        assert shared == ("r1", {"request_id": "r1"})
    finally:
        structlog.contextvars.clear_contextvars()


async def test_a_loop_starts_in_a_fresh_context() -> None:
    supervisor = Supervisor("reconciler")
    request_id.set("r1")
    seen: list[str] = []

    async def body() -> None:
        seen.append(request_id.get())

    await supervisor.spawn_loop(body, name="loop")
    assert seen == ["none"]


# --- Supervisor: loops --------------------------------------------------------------------------


async def test_a_crashed_loop_is_restarted_after_its_backoff_until_its_body_returns() -> None:
    supervisor = Supervisor("prober")
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def body() -> None:
        starts.append(loop.time())
        if len(starts) <= 3:
            raise ConnectionError(f"crash {len(starts)}")

    with capture_logs() as logs:
        task = supervisor.spawn_loop(body, name="probe-loop", backoff=Backoff(0.01, 0.025))
        await asyncio.wait_for(task, 5)
        await settle()
    assert len(starts) == 4, "three crashes, three restarts, then the body returned"
    crashed = events(logs, "task_crashed")
    assert [entry["restart_in_s"] for entry in crashed] == [0.01, 0.02, 0.025]
    assert all(entry["task"] == "probe-loop" for entry in crashed)
    assert all(entry["owner"] == "prober" for entry in crashed)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for gap, entry in zip(gaps, crashed, strict=True):
        assert gap >= entry["restart_in_s"] * 0.9, "restarted before its backoff"
    assert events(logs, "task_failed") == [], "a loop's crash is handled by its guard"
    await settle()
    assert len(starts) == 4, "a body that returned is not started again"
    assert len(supervisor) == 0


async def test_a_loop_is_stopped_by_close_even_while_it_backs_off() -> None:
    supervisor = Supervisor("prober")
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("always")

    with capture_logs():
        task = supervisor.spawn_loop(body, name="doomed", backoff=Backoff(60.0, 60.0))
        await settle()
        assert runs == 1
        assert not task.done()
        await asyncio.wait_for(supervisor.close(), 1)
    assert task.cancelled()
    assert runs == 1


# --- Supervisor: close and wait -----------------------------------------------------------------


async def test_close_cancels_and_awaits_every_task() -> None:
    supervisor = Supervisor("registry")
    cleaned: list[str] = []

    async def holds(name: str, cleanup_steps: int) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            for _ in range(cleanup_steps):  # a cleanup that itself takes a few loop turns
                await asyncio.sleep(0)
            cleaned.append(name)

    tasks = [supervisor.spawn(holds(f"t{i}", i), name=f"t{i}") for i in range(5)]
    await settle()
    await asyncio.wait_for(supervisor.close(), 1)
    assert sorted(cleaned) == [f"t{i}" for i in range(5)], "close returned before a cleanup ended"
    assert all(task.cancelled() for task in tasks)
    assert len(supervisor) == 0


async def test_a_closed_supervisor_refuses_new_tasks_and_closes_what_it_refuses() -> None:
    supervisor = Supervisor("registry")
    await supervisor.close()
    started = False

    async def work() -> None:
        nonlocal started
        started = True

    coro = work()
    with pytest.raises(RuntimeError, match="registry is closing"):
        supervisor.spawn(coro, name="late")
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    async def body() -> None:
        raise AssertionError("a refused loop never runs")

    with pytest.raises(RuntimeError, match="cannot start late-loop"):
        supervisor.spawn_loop(body, name="late-loop")
    del coro
    gc.collect()  # a refused coroutine left unclosed would warn here (warnings are errors)
    assert not started
    assert len(supervisor) == 0


async def test_a_task_cannot_start_another_while_its_supervisor_closes() -> None:
    supervisor = Supervisor("registry")
    refused: list[BaseException] = []

    async def spawner() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            try:
                supervisor.spawn(asyncio.sleep(0), name="child")
            except RuntimeError as exc:
                refused.append(exc)

    supervisor.spawn(spawner(), name="parent")
    await settle()
    await asyncio.wait_for(supervisor.close(), 1)
    assert len(refused) == 1
    assert len(supervisor) == 0


async def test_wait_returns_once_every_task_ended_including_ones_started_meanwhile() -> None:
    supervisor = Supervisor("app")
    gates = [asyncio.Event() for _ in range(3)]
    ended: list[str] = []

    async def child() -> None:
        await gates[2].wait()
        ended.append("child")

    async def parent() -> None:
        await gates[1].wait()
        supervisor.spawn(child(), name="child")
        ended.append("parent")

    async def first() -> None:
        await gates[0].wait()
        ended.append("first")

    supervisor.spawn(first(), name="first")
    supervisor.spawn(parent(), name="parent")
    waiting = asyncio.create_task(supervisor.wait())
    for gate in gates:
        await settle()
        assert not waiting.done(), f"wait returned with {supervisor.names} still running"
        gate.set()
    await asyncio.wait_for(waiting, 1)
    assert ended == ["first", "parent", "child"]
    assert len(supervisor) == 0


async def test_wait_returns_at_once_when_nothing_runs_and_counts_failed_tasks_as_ended() -> None:
    supervisor = Supervisor("app")
    await asyncio.wait_for(supervisor.wait(), 1)

    async def broken() -> None:
        raise ValueError("boom")

    with capture_logs():
        task = supervisor.spawn(broken(), name="broken")
        await asyncio.wait_for(supervisor.wait(), 1)
    assert isinstance(task.exception(), ValueError)
