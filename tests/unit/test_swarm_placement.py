"""Whether a Swarm node can take a new engine: ready, active and meeting every placement
constraint, read as Swarm reads them; and what provisioning says when none can."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.fleet.swarm_nodes import NodeRecord
from acestream_gateway.fleet.swarm_placement import constraint_met, no_taker_message, takers


def node(
    hostname: str = "box1",
    *,
    role: str = "worker",
    availability: str = "active",
    state: str = "ready",
    labels: dict[str, str] | None = None,
) -> NodeRecord:
    return NodeRecord(
        f"id-{hostname}", hostname, "10.0.0.5", role, availability, state, labels or {}
    )


@pytest.mark.parametrize(
    ("constraint", "met"),
    [
        ("node.labels.acestream==true", True),
        ("node.labels.acestream == true", True),
        ("node.labels.acestream==false", False),
        ("node.labels.acestream!=false", True),
        ("node.labels.gpu==yes", False),  # a node without the label does not meet ==
        ("node.labels.gpu!=yes", True),  # ... and meets !=
        ("node.role==worker", True),
        ("node.role!=worker", False),
        ("node.hostname==box1", True),
        ("node.hostname!=box1", False),
        ("node.id==id-box1", True),
        ("node.platform.os==linux", True),  # not read by the gateway: Swarm decides
        ("engine.labels.storage==ssd", True),
    ],
)
def test_a_constraint_is_read_as_swarm_reads_it(constraint: str, met: bool) -> None:
    assert constraint_met(node(labels={"acestream": "true"}), constraint) is met


def test_only_ready_active_nodes_meeting_every_constraint_take_engines() -> None:
    good = node("a", labels={"acestream": "true"})
    unlabelled = node("b")
    drained = node("c", availability="drain", labels={"acestream": "true"})
    paused = node("d", availability="pause", labels={"acestream": "true"})
    down = node("e", state="down", labels={"acestream": "true"})
    nodes = [good, unlabelled, drained, paused, down]
    constraints = ["node.labels.acestream==true", "node.role==worker"]
    assert takers(nodes, constraints) == [good]
    assert no_taker_message(nodes, constraints) is None
    assert takers(nodes, ()) == [good, unlabelled]


def test_when_no_node_can_take_an_engine_each_says_why() -> None:
    nodes = [
        node("c", availability="drain", labels={"acestream": "true"}),
        node("a", labels={"acestream": "false"}),
        node("d", availability="pause"),
        node("e", state="down"),
    ]
    message = no_taker_message(nodes, ["node.labels.acestream==true"])
    assert message == (
        "no Swarm node can take engines: a does not meet node.labels.acestream==true; "
        "c is drained; d is paused; e is down"
    )
    assert no_taker_message([], ()) == "no Swarm node can take engines: the manager lists no node"


labels = st.dictionaries(st.sampled_from(["acestream", "gpu"]), st.sampled_from(["true", "x"]))
nodes = st.builds(
    node,
    st.sampled_from(["a", "b", "c"]),
    role=st.sampled_from(["manager", "worker"]),
    availability=st.sampled_from(["active", "pause", "drain"]),
    state=st.sampled_from(["ready", "down", "unknown"]),
    labels=labels,
)
constraints = st.lists(
    st.builds(
        "{}{}{}".format,
        st.sampled_from(["node.labels.acestream", "node.labels.gpu", "node.role", "node.id"]),
        st.sampled_from(["==", "!="]),
        st.sampled_from(["true", "x", "worker", "id-a"]),
    ),
    max_size=3,
)


@given(st.lists(nodes, max_size=4), constraints)
def test_a_message_exactly_when_no_node_takes_engines_and_takers_are_reachable(
    listed: list[NodeRecord], wanted: list[str]
) -> None:
    found = takers(listed, wanted)
    assert all(n.reachable for n in found)
    assert (no_taker_message(listed, wanted) is None) == bool(found)
    for each in found:  # == and != on one attribute and value never both hold
        for constraint in wanted:
            flipped = constraint.replace("!=", "\0").replace("==", "!=").replace("\0", "==")
            assert not constraint_met(each, flipped)
