"""Swarm engines: the service spec, the constraints, and tasks (not services) as engines."""

from __future__ import annotations

from acestream_gateway.engines.model import EngineAddress
from acestream_gateway.fleet.specs import LABEL_INSTANCE, LABEL_MANAGED, LABEL_PORT
from acestream_gateway.fleet.swarm_specs import (
    follow_tasks,
    parse_constraints,
    running_engines,
    service_record,
    service_spec,
    task_record,
)
from acestream_gateway.settings import Settings


def _task(
    task_id: str,
    service: str = "svc1",
    node: str = "node1",
    state: str = "running",
    desired: str = "running",
    port: int | None = 19001,
    created: str = "2026-12-04T10:00:00Z",
) -> dict[str, object]:
    ports = [] if port is None else [{"Protocol": "tcp", "PublishedPort": port, "TargetPort": port}]
    return {
        "ID": task_id,
        "ServiceID": service,
        "NodeID": node,
        "DesiredState": desired,
        "CreatedAt": created,
        "Status": {"State": state, "PortStatus": {"Ports": ports}},
    }


ADDRESSES = {"node1": "10.0.0.5", "node2": "10.0.0.6"}


def test_constraints_are_read_comma_separated_with_blanks_dropped() -> None:
    assert parse_constraints("node.labels.acestream==true, node.role==worker ,") == (
        "node.labels.acestream==true",
        "node.role==worker",
    )
    assert parse_constraints("") == ()


def test_the_service_spec_publishes_the_port_in_host_mode_with_the_constraints() -> None:
    spec = service_spec(Settings(), 19007, ["node.labels.acestream==true"])
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 19007, "PublishedPort": 19007, "PublishMode": "host"}
    ]
    task = spec["TaskTemplate"]
    assert task["Placement"] == {"Constraints": ["node.labels.acestream==true"]}
    assert task["ContainerSpec"]["Args"] == ["--http-port", "19007"]
    assert spec["Labels"][LABEL_MANAGED] == "true"
    assert spec["Labels"][LABEL_PORT] == "19007"
    assert spec["Labels"][LABEL_INSTANCE] == Settings().gateway_instance_name
    assert task["ContainerSpec"]["Labels"] == spec["Labels"]


def test_a_service_is_read_back_with_its_labels() -> None:
    service = service_record({"ID": "s1", "Spec": {"Name": "eng-1", "Labels": {"a": "b"}}})
    assert (service.id, service.name, service.labels) == ("s1", "eng-1", {"a": "b"})


def test_the_engine_is_the_running_task_at_its_node_address_and_published_port() -> None:
    tasks = [task_record(_task("t1", node="node2", port=19003))]
    engines = running_engines(tasks, ADDRESSES)
    assert engines["svc1"].task_id == "t1"
    assert engines["svc1"].address == EngineAddress("10.0.0.6", 19003)


def test_a_service_whose_task_is_not_running_or_not_placed_has_no_engine() -> None:
    tasks = [
        task_record(_task("t1", state="starting")),
        task_record(_task("t2", service="svc2", desired="shutdown")),
        task_record(_task("t3", service="svc3", node="unknown")),
        task_record(_task("t4", service="svc4", port=None)),
    ]
    assert running_engines(tasks, ADDRESSES) == {}


def test_of_two_running_tasks_of_a_service_the_newest_is_the_engine() -> None:
    tasks = [
        task_record(_task("new", created="2026-12-04T10:05:00Z")),
        task_record(_task("old", created="2026-12-04T10:00:00Z")),
    ]
    assert running_engines(tasks, ADDRESSES)["svc1"].task_id == "new"


def test_a_rescheduled_task_is_a_new_engine_and_the_old_one_is_gone() -> None:
    before = running_engines([task_record(_task("t1"))], ADDRESSES)
    after = running_engines(
        [task_record(_task("t1", state="failed", desired="shutdown")), task_record(_task("t2"))],
        ADDRESSES,
    )
    changes = follow_tasks({e.task_id for e in before.values()}, after)
    assert changes.gone == ("t1",)
    assert [e.task_id for e in changes.new] == ["t2"]


def test_known_running_tasks_are_neither_new_nor_gone() -> None:
    engines = running_engines([task_record(_task("t1"))], ADDRESSES)
    changes = follow_tasks({"t1"}, engines)
    assert changes.gone == ()
    assert changes.new == ()
