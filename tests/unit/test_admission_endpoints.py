"""Admission over several Docker endpoints: MAX_ACTIVE_REPLICAS caps all of them together, each
endpoint's max_engines its own share, and each takes ports from its own range only."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.fleet.admission import Admission, NotAdmitted, Refusal, Reservation
from acestream_gateway.fleet.breaker import CircuitBreaker
from acestream_gateway.fleet.endpoints import FleetSlots
from acestream_gateway.fleet.ports import PortAllocator
from acestream_gateway.settings import Settings

TOTAL = 5
ENDPOINTS = [
    {"name": "a", "url": "unix:///run/a.sock", "ports": "19000-19005", "max_engines": 4},
    {"name": "b", "url": "unix:///run/b.sock", "ports": "19000-19002", "max_engines": 2},
]


def admissions() -> list[Admission]:
    settings = Settings(docker_endpoints=json.dumps(ENDPOINTS), max_active_replicas=TOTAL)
    slots = FleetSlots(settings.max_active_replicas)
    made = []
    for endpoint in settings.endpoints():
        view = settings.for_endpoint(endpoint)
        made.append(
            Admission(
                settings=view,
                ports=PortAllocator(*endpoint.ports, recheck_s=20),
                breaker=CircuitBreaker(threshold=9, recovery_s=1, max_backoff_s=4),
                on_failure=lambda reason: None,
                slots=slots,
                share=endpoint.max_engines,
            )
        )
    return made


@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.booleans()), max_size=40))
def test_slots_hold_over_all_endpoints_and_each_share(steps: list[tuple[int, bool]]) -> None:
    """``(endpoint, start)``: start one engine there, or end its oldest start or container."""
    fleet = admissions()
    live: list[list[Reservation]] = [[], []]
    held: list[list[str]] = [[], []]
    for n, (which, start) in enumerate(steps):
        admission = fleet[which]
        if start:
            try:
                live[which].append(admission.admit())
            except NotAdmitted as exc:
                refusal = exc.refusal
                assert refusal is Refusal.FULL
                full_here = admission.taken >= admission.share
                assert full_here or admission.slots.taken >= TOTAL, "refused with room left"
        elif live[which]:
            reservation = live[which].pop(0)
            if n % 2:
                reservation.held(f"c{n}")
                held[which].append(f"c{n}")
            else:
                reservation.give_back()
        elif held[which]:
            admission.gone(held[which].pop(0))
        assert sum(a.taken for a in fleet) <= TOTAL
        for a in fleet:
            assert a.taken <= a.share
            assert all(a.ports.lo <= port <= a.ports.hi for port in a.ports.held)
        assert fleet[0].room() == max(0, min(TOTAL - fleet[0].slots.taken, 4 - fleet[0].taken))


def test_a_full_share_names_its_endpoint() -> None:
    a, b = admissions()
    b.admit(), b.admit()
    with pytest.raises(NotAdmitted, match=r"^endpoint b is at its max_engines \(2\)$"):
        b.admit()
    assert a.room() == 3, "the other endpoint keeps the fleet's remaining slots"
