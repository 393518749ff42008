"""The whole fleet over three Docker endpoints, as the state machine of ``tests/fleet_machine.py``
drives it: ``a`` and ``b`` on daemons of their own, ``c`` on ``a``'s daemon (its own range), each
with its own share under one MAX_ACTIVE_REPLICAS smaller than the shares together. Docker fails
on one endpoint at a time, a daemon goes away (its engines with it, or not) and comes back with
its containers kept or lost meanwhile, with operators, players, health flips and failovers
interleaved. The sequences it found are replayed below as plain tests."""

from __future__ import annotations

import json

from acestream_gateway.settings import Settings
from tests.fakedocker import FakeDocker
from tests.fleet_machine import FleetMachine, machine_settings, replay, run_settings

IMAGE = "acestream/engine:test"
MAX, MIN = 4, 2
ENDPOINTS = (  # name, engine host, ports, max_engines: more ports than its share
    ("a", "127.0.0.2", "19100-19104", 2),
    ("b", "127.0.0.3", "19200-19203", 3),
    ("c", "127.0.0.2", "19300-19302", 2),
)


def fleet_settings() -> Settings:
    endpoints = [
        {
            "name": name,
            "url": f"unix:///run/{name}.sock",
            "engine_host": host,
            "ports": ports,
            "max_engines": share,
        }
        for name, host, ports, share in ENDPOINTS
    ]
    return machine_settings(
        IMAGE, min_replicas=MIN, max_replicas=MAX, docker_endpoints=json.dumps(endpoints)
    )


class ThreeEndpoints(FleetMachine):
    """See the module docstring."""

    def configure(self) -> tuple[Settings, dict[str, FakeDocker]]:
        first, second = FakeDocker(images=(IMAGE,)), FakeDocker(images=(IMAGE,))
        return fleet_settings(), {"a": first, "b": second, "c": first}


ThreeEndpoints.TestCase.settings = run_settings()
test_the_fleet_keeps_its_rules_over_endpoints_that_fail_and_go_away = ThreeEndpoints.TestCase


# Sequences the machine found, replayed as they shrank, so they are checked on every run.


def test_an_operator_start_goes_to_no_endpoint_found_unreachable_while_it_waited() -> None:
    """The start waited for the pass under way, which found every endpoint gone: it goes to
    none of them (it used to go where it had chosen before it waited)."""
    replay(
        ThreeEndpoints,
        *[("operator_starts_an_engine", {})] * 3,
        ("endpoint_goes_away", {"where": 0, "host": False}),
        ("endpoint_goes_away", {"where": 1, "host": False}),
        ("cancel_a_task", {"pick": 0}),
        ("cancel_a_task", {"pick": 0}),
    )


def test_a_restarted_gateway_counts_an_endpoint_it_could_not_list_as_its_whole_share() -> None:
    """Restarted while two endpoints' listings fail, the gateway does not know how many of its
    engines run there: it starts none in their places (it used to fill MAX_ACTIVE_REPLICAS on the
    endpoint it could list, over the engines of the others)."""
    replay(
        ThreeEndpoints,
        ("quiet_pass", {}),
        ("operator_starts_an_engine", {}),
        ("run", {"turns": 1}),
        ("docker_fails_a_call", {"fault": "409", "method": "list", "where": 0}),
        ("docker_fails_a_call", {"fault": "409", "method": "list", "where": 1}),
        ("gateway_restarts", {}),
    )


def test_a_pass_starts_nothing_on_an_endpoint_found_gone_while_it_started_on_another() -> None:
    """The pass placed engines on two endpoints; while it started those of the first, the
    second was found gone: it starts none there (it used to, as placed)."""
    replay(
        ThreeEndpoints,
        ("quiet_pass", {}),
        ("reconcile_pass", {}),
        ("operator_drains_an_engine", {"pick": 1}),
        ("container_goes", {"how": "lost", "pick": 0}),
        ("run", {"turns": 1}),
        ("endpoint_goes_away", {"host": False, "where": 1}),
        ("run", {"turns": 1}),
    )
