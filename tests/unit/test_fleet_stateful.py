"""The whole fleet on its one default Docker endpoint, as the state machine of
``tests/fleet_machine.py`` drives it: Docker failing the ways real daemons do, or gone, with
operators, players, health flips and failovers interleaved. The sequences it found are replayed
below as plain tests."""

from __future__ import annotations

from acestream_gateway.settings import Settings
from tests.fakedocker import FakeDocker
from tests.fleet_machine import FleetMachine, machine_settings, replay, run_settings

IMAGE = "acestream/engine:test"
LO, MAX, MIN = 19100, 3, 1
PORTS = 5  # more ports than engines: a port set aside must not stop the fleet


def fleet_settings() -> Settings:
    ports = f"{LO}-{LO + PORTS - 1}"
    return machine_settings(IMAGE, min_replicas=MIN, max_replicas=MAX, port_range_host=ports)


class OneEndpoint(FleetMachine):
    """The fleet on the local Docker daemon alone (no DOCKER_ENDPOINTS)."""

    def configure(self) -> tuple[Settings, dict[str, FakeDocker]]:
        return fleet_settings(), {"local": FakeDocker(images=(IMAGE,))}


OneEndpoint.TestCase.settings = run_settings()
test_the_fleet_keeps_its_rules_under_docker_faults = OneEndpoint.TestCase


# Sequences the machine found, replayed as they shrank, so they are checked on every run.


def test_operator_starts_beyond_the_maximum_are_refused() -> None:
    replay(
        OneEndpoint,
        ("player_claims", {"content": "aa"}),
        ("quiet_pass", {}),
        *[("operator_starts_an_engine", {})] * 3,
        ("cancel_a_task", {"pick": 0}),
        ("run", {"turns": 1}),
        ("quiet_pass", {}),
    )


def test_a_start_cancelled_before_it_ran_gives_its_reservation_back() -> None:
    replay(
        OneEndpoint,
        ("operator_starts_an_engine", {}),
        ("operator_starts_an_engine", {}),
        ("reconcile_pass", {}),
        ("operator_starts_an_engine", {}),
        *[("cancel_a_task", {"pick": 0})] * 3,
        ("quiet_pass", {}),
    )


def test_a_create_cancelled_after_docker_made_the_container_keeps_its_port() -> None:
    replay(
        OneEndpoint,
        ("docker_fails_a_call", {"method": "run", "fault": "late"}),
        ("operator_starts_an_engine", {}),
        ("operator_starts_an_engine", {}),
        ("cancel_a_task", {"pick": 0}),
        ("cancel_a_task", {"pick": 0}),
        ("quiet_pass", {}),
    )


def test_an_operator_removing_a_starting_engine_counts_no_provisioning_failure() -> None:
    replay(
        OneEndpoint,
        ("engines_boot_slowly", {}),
        ("operator_starts_an_engine", {}),
        ("run", {"turns": 2}),
        ("operator_starts_an_engine", {}),
        ("reconcile_pass", {}),
        ("operator_removes_an_engine", {"pick": 0}),
        ("operator_starts_an_engine", {}),
        ("cancel_a_task", {"pick": 0}),
    )


# Its find "a listed container holds its port while the pass removes another" is replayed,
# deterministically, in tests/unit/test_fleet_faults.py
# (test_every_listed_container_holds_its_port_and_slot_before_the_pass_removes_any): the sequence
# it was found with began with an operator's start before the first listing, which is refused now.
