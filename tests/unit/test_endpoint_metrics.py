"""/metrics shows each Docker endpoint: reachable, engines, share and room."""

from __future__ import annotations

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
