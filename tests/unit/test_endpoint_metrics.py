"""/metrics shows each Docker endpoint (reachable, engines, share and room) and each Swarm node
(whether it takes engines, and its engines)."""

from __future__ import annotations

from acestream_gateway.fleet.swarm_nodes import NodeEngine, NodeStatus
from acestream_gateway.ops.scrape import GatewayCollector
from tests.support import Endpoint, endpoints_fleet


def test_each_endpoint_has_its_reachability_engines_share_and_room() -> None:
    fleet = endpoints_fleet(
        Endpoint("here", True, None, None, 2, 3, 1, "1-9", 2),
        Endpoint("far", False, "gone", "gone", 1, 2, 0, "1-9", 1),
    )
    families = {
        f.name: {s.labels["endpoint"]: s.value for s in f.samples}
        for f in GatewayCollector._endpoint_families(fleet)
    }
    prefix = "acestream_gateway_endpoint_"
    assert families[f"{prefix}reachable"] == {"here": 1, "far": 0}
    assert families[f"{prefix}engines"] == {"here": 2, "far": 1}
    assert families[f"{prefix}max_engines"] == {"here": 3, "far": 2}
    assert families[f"{prefix}room"] == {"here": 1, "far": 0}


def test_each_swarm_node_says_whether_it_takes_engines_and_counts_its_engines() -> None:
    engine = NodeEngine("t1", "e1", 19000, "ready")
    ready = NodeStatus(
        "n1", "box1", "10.0.0.5", "manager", "active", "ready", True, "ready", (engine,)
    )
    drained = NodeStatus("n2", "box2", "10.0.0.6", "worker", "drain", "ready", False, "drained", ())
    swarm = Endpoint("default", True, None, None, 1, 3, 2, "1-9", 1, (ready, drained))
    families = {
        f.name: {(s.labels["node"], s.labels["hostname"]): s.value for s in f.samples}
        for f in GatewayCollector._endpoint_families(endpoints_fleet(swarm))
        if "_swarm_node_" in f.name
    }
    prefix = "acestream_gateway_swarm_node_"
    assert families[f"{prefix}up"] == {("n1", "box1"): 1, ("n2", "box2"): 0}
    assert families[f"{prefix}engines"] == {("n1", "box1"): 1, ("n2", "box2"): 0}
