"""Claims waiting for an engine: a queue, first come first served, that the pool serves when a
change makes room.

A change hands the room it made to the waiters in arrival order, in the same synchronous step as
the change itself (so nothing runs between the choice of an engine and the registration of the
claim, as under the pool's lock), and refuses the waiters it leaves without hope. It stops as
soon as nothing more can happen, so a change wakes only the waiters it serves or refuses, never
every waiter to look again. The queue's length is the fleet's demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Releasable(Protocol):
    def release(self) -> None: ...


C = TypeVar("C", bound=Releasable)


@dataclass(eq=False, slots=True)
class Waiter(Generic[C]):
    """One claim in the queue; its future gets the claim or the refusal."""

    content_key: str
    avoid: frozenset[str]
    patient: bool
    future: asyncio.Future[C]


class WaitQueue(Generic[C]):
    """The waiting claims, in arrival order; ``on_change`` is told when one joins or leaves."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._waiters: dict[Waiter[C], None] = {}  # a dict keeps arrival order, removes in O(1)

    def __len__(self) -> int:
        return len(self._waiters)

    def join(self, content_key: str, avoid: frozenset[str], *, patient: bool) -> Waiter[C]:
        future: asyncio.Future[C] = asyncio.get_running_loop().create_future()
        waiter = Waiter(content_key, avoid, patient, future)
        self._waiters[waiter] = None
        self._on_change()
        return waiter

    async def turn(self, waiter: Waiter[C], timeout_s: float) -> C | None:
        """The claim handed to ``waiter``, None when none came within ``timeout_s``, or the
        refusal it got. A claim handed over as the wait is cancelled is given back."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait([waiter.future])
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            self._leave(waiter)
            if waiter.future.done() and waiter.future.exception() is None:
                waiter.future.result().release()
            raise
        handed = waiter.future.done()
        self._leave(waiter)
        return waiter.future.result() if handed else None

    def serve(
        self,
        place: Callable[[str, frozenset[str]], C | None],
        room: Callable[[], bool],
        refusal: Callable[[bool], Exception | None],
    ) -> None:
        """Hand the room there is to the waiters in order, refuse those that can no longer get
        any; see the module docstring. All three are the pool's, synchronous: ``place`` chooses
        an engine for a content (avoiding some) and registers a claim on it, or gives None;
        ``room`` says whether any engine has a free slot at all; ``refusal`` says why a waiter
        (patient or not) must stop waiting, or None while an engine may come."""
        if not self._waiters:
            return
        refusals = {p: refusal(p) for p in (False, True)}
        has_room = room()
        if not has_room and refusals[False] is None and refusals[True] is None:
            return
        for waiter in list(self._waiters):
            claim = place(waiter.content_key, waiter.avoid) if has_room else None
            if claim is not None:
                del self._waiters[waiter]
                waiter.future.set_result(claim)
                has_room = room()
                continue
            if refusals[waiter.patient] is not None:
                del self._waiters[waiter]
                refused = refusal(waiter.patient)  # an exception of its own for each
                assert refused is not None
                waiter.future.set_exception(refused)
            elif not has_room and refusals[not waiter.patient] is None:
                return  # no room, and no waiter further on can be refused

    def _leave(self, waiter: Waiter[C]) -> None:
        """Out of the queue; no claim can be handed to it any more."""
        if waiter in self._waiters:
            del self._waiters[waiter]
            self._on_change()
        if not waiter.future.done():
            waiter.future.cancel()
