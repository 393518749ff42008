"""The state half of ``/metrics``: read from memory when Prometheus scrapes, never kept twice.

Engines by state, capacity (the pool's own count, rule 1), streams, players, the bytes moved,
provisioning blocks, the breaker and the VPN are facts the pool, the registry and the fleet hold
anyway; a custom collector turns them into metric families at scrape time, in the same registry
as the event counters of ``acestream_gateway.metrics``. prometheus-client renders the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..engines.model import EngineState
from ..engines.pool import EnginePool
from ..engines.provisioning import BlockedReason
from ..metrics import PREFIX
from ..streaming.registry import StreamRegistry
from .status import FleetFacts, StationFacts, hls_players, playing

_BREAKER_STATES = ("closed", "open", "half_open")


class GatewayCollector(Collector):
    """Metric families of the gateway's state, from the pool, the registry and the fleet."""

    def __init__(
        self,
        *,
        pool: EnginePool,
        registry: StreamRegistry,
        fleet: Callable[[], FleetFacts],
        stations: Callable[[], StationFacts] = StationFacts,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._fleet = fleet
        self._stations = stations

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield self._engines()
        yield from self._capacity()
        yield from self._streams()
        yield from self._bytes()
        yield self._blocks()
        yield from self._fleet_families(self._fleet())
        yield from self._station_families(self._stations())

    @staticmethod
    def _station_families(stations: StationFacts) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            f"{PREFIX}_channels_tuned",
            "Lineup channels with players attached (each takes one of HDHR_TUNER_COUNT tuners).",
            value=stations.tuned,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_channels_without_source",
            "Lineup channels none of whose sources may be tried now (all failed lately).",
            value=stations.without_source,
        )

    def _engines(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            f"{PREFIX}_engines", "Engines the gateway knows, by state.", labels=["state"]
        )
        states = [e.state for e in self._pool.engines()]
        for state in EngineState:
            family.add_metric([state.value], states.count(state))
        return family

    def _capacity(self) -> Iterator[GaugeMetricFamily]:
        capacity = self._pool.capacity()
        yield GaugeMetricFamily(
            f"{PREFIX}_capacity_engines",
            "Engines that can be used or carry streams (capacity total).",
            value=capacity.total,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_capacity_used",
            "Engines with at least one active or claimed stream.",
            value=capacity.used,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_capacity_available",
            "Engines with no stream (total - used).",
            value=capacity.available,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_max_replicas",
            "The most engines the fleet may have.",
            value=self._pool.max_engines,
        )

    def _streams(self) -> Iterator[GaugeMetricFamily]:
        channels = self._registry.channels()
        yield GaugeMetricFamily(
            f"{PREFIX}_streams",
            "Channels open (starting, playing, failing over, lingering).",
            value=len(channels),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_streams_playing",
            "Channels whose engine session plays now.",
            value=sum(1 for c in channels if playing(c)),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_players",
            "Players connected to a channel (TS).",
            value=sum(c.players for c in channels),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_players_hls",
            "HLS players: clients that fetched a channel's playlist or segments within HLS_IDLE_S.",
            value=sum(hls_players(c) for c in channels),
        )

    def _bytes(self) -> Iterator[CounterMetricFamily]:
        tally = self._registry.tally
        live_in = sum(c.meter.bytes_in for c in self._registry.running())
        yield CounterMetricFamily(
            f"{PREFIX}_bytes_in",
            "Stream bytes read from engines.",
            value=tally.bytes_in_ended + live_in,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_bytes_out", "Stream bytes handed to players.", value=tally.bytes_out
        )

    def _blocks(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            f"{PREFIX}_provisioning_blocked",
            "1 when provisioning is blocked for this reason (max_capacity: the fleet is full).",
            labels=["reason"],
        )
        held = {b.reason for b in self._pool.provisioning.blocks()}
        current = self._pool.blocked()
        if current is not None:
            held.add(current.reason)
        for reason in BlockedReason:
            family.add_metric([reason.value], 1 if reason in held else 0)
        return family

    def _fleet_families(self, fleet: FleetFacts) -> Iterator[GaugeMetricFamily]:
        breaker = GaugeMetricFamily(
            f"{PREFIX}_circuit_breaker_state",
            "1 for the provisioning circuit breaker's current state.",
            labels=["state"],
        )
        for state in _BREAKER_STATES:
            breaker.add_metric([state], 1 if fleet.breaker == state else 0)
        yield breaker
        yield GaugeMetricFamily(
            f"{PREFIX}_vpn_enabled", "1 in VPN mode.", value=1 if fleet.vpns else 0
        )
        connected = GaugeMetricFamily(
            f"{PREFIX}_vpn_connected", "1 when the VPN container's tunnel is up.", labels=["vpn"]
        )
        for vpn in fleet.vpns:
            connected.add_metric([vpn.name], 1 if vpn.connected else 0)
        yield connected
        yield from self._endpoint_families(fleet)

    @staticmethod
    def _endpoint_families(fleet: FleetFacts) -> Iterator[GaugeMetricFamily]:
        """Per Docker endpoint: reachable, engines, share and room left; then each Swarm node."""
        families = {
            "reachable": "1 when the Docker endpoint answers.",
            "engines": "Engines in the pool that live on the Docker endpoint.",
            "max_engines": "The Docker endpoint's share of engines (max_engines).",
            "room": "Engines that may still start on the Docker endpoint now.",
        }
        for name, text in families.items():
            family = GaugeMetricFamily(f"{PREFIX}_endpoint_{name}", text, labels=["endpoint"])
            for endpoint in fleet.endpoints:
                value = getattr(endpoint, name)
                family.add_metric([endpoint.name], int(value))
            yield family
        yield from GatewayCollector._node_families(fleet)

    @staticmethod
    def _node_families(fleet: FleetFacts) -> Iterator[GaugeMetricFamily]:
        """Per Swarm node (by id, with its hostname): whether it takes engines, and its engines."""
        labels = ["endpoint", "node", "hostname"]
        up = GaugeMetricFamily(
            f"{PREFIX}_swarm_node_up",
            "1 when the Swarm node is ready and active (its engines are used, it takes new ones).",
            labels=labels,
        )
        engines = GaugeMetricFamily(
            f"{PREFIX}_swarm_node_engines",
            "Engines in the pool whose task runs on the Swarm node.",
            labels=labels,
        )
        for endpoint in fleet.endpoints:
            for node in endpoint.nodes:
                names = [endpoint.name, node.id, node.hostname]
                up.add_metric(names, 1 if node.reachable else 0)
                engines.add_metric(names, len(node.engines))
        yield up
        yield engines
