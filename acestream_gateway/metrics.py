"""The gateway's Prometheus counters and histograms of events, one set per application.

Events are counted where they happen (a session started or failed, a failover, a player dropped,
an engine became ready, a provisioning attempt failed) on objects of this class, which the app
creates and hands down; nothing registers in prometheus-client's global default registry, so two
gateways in one process (tests) never share a count. What is a state rather than an event
(engines by state, capacity, streams, players, bytes moved, the breaker, the VPN) is read from
memory at scrape time by ``ops/scrape.py`` into the same registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

PREFIX = "acestream_gateway"

# Seconds: a warm channel starts in about a second, a cold one in 10-25 s, sometimes 50.
_FIRST_BYTE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
# Seconds: an engine container answers in a few seconds, a slow host in tens.
_ENGINE_START_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    """The event metrics of one gateway, in a registry of its own (``registry``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.session_starts = Counter(
            f"{PREFIX}_engine_session_starts",
            "Engine sessions started (first starts and failovers).",
            registry=registry,
        )
        self.session_failures = Counter(
            f"{PREFIX}_engine_session_failures",
            "Engine session starts that failed, by reason (refused: the engine refused the "
            "content; engine_error: it failed or did not answer).",
            ["reason"],
            registry=registry,
        )
        self.failovers = Counter(
            f"{PREFIX}_failovers",
            "Times a playing channel was opened again, by why its session ended.",
            ["reason"],
            registry=registry,
        )
        self.source_failovers = Counter(
            f"{PREFIX}_source_failovers",
            "Times a lineup channel left a source for its next one, by reason (refused: the "
            "engine refused the content; no_start: it did not start; ended: it played, then "
            "ended for good).",
            ["reason"],
            registry=registry,
        )
        self.player_drops = Counter(
            f"{PREFIX}_player_drops",
            "Players whose stream the gateway ended, by reason (too_slow, channel_failed, "
            "stopped by an operator, shutdown).",
            ["reason"],
            registry=registry,
        )
        self.time_to_first_byte = Histogram(
            f"{PREFIX}_time_to_first_byte_seconds",
            "From a player's request to its first stream data (keep-alive packets not counted).",
            buckets=_FIRST_BYTE_BUCKETS,
            registry=registry,
        )
        self.engine_start_duration = Histogram(
            f"{PREFIX}_engine_start_duration_seconds",
            "From an engine container's start to its first answer.",
            buckets=_ENGINE_START_BUCKETS,
            registry=registry,
        )
        self.provisioning_failures = Counter(
            f"{PREFIX}_provisioning_failures",
            "Provisioning failures the circuit breaker counts (create errors, engines never "
            "ready, image pulls).",
            registry=registry,
        )
        self.ledger_repairs = Counter(
            f"{PREFIX}_ledger_repairs",
            "Times the fleet's ledger of slots and ports was corrected from Docker's listing, by "
            "kind (reservation_adopted: a create that got no answer had made its container; "
            "reservation_expired: it had not; held_gone: a container vanished unreported).",
            ["kind"],
            registry=registry,
        )
