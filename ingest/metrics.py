"""What the ingester counts, and its Prometheus metrics, read from those counters and the
subscriber at scrape time (nothing is counted twice)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ingest.store import WriteResult
from wire.mqtt import Subscriber
from wire.stats import Histogram

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 3600.0)


@dataclass(slots=True)
class Counters:
    """What the ingester did since it started; served by :mod:`ingest.metrics`."""

    messages: int = 0
    readings: int = 0
    """Readings received in telemetry batches (inserted, duplicate or not)."""
    inserted: int = 0
    duplicates: int = 0
    replayed_batches: int = 0
    dead_letters: int = 0
    statuses: int = 0
    events: int = 0
    commits: int = 0
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    """Messages per commit."""
    commit_latency: Histogram = field(default_factory=Histogram)
    """Seconds from taking a batch of messages to its commit."""
    lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS))
    """Seconds from a gateway sending a batch to its commit here."""

    def add(self, messages: int, result: WriteResult) -> None:
        self.messages += messages
        self.readings += result.readings
        self.inserted += result.inserted
        self.duplicates += result.duplicates
        self.replayed_batches += result.replayed_batches
        self.dead_letters += result.dead_letters
        self.statuses += result.statuses
        self.events += result.events
        self.commits += 1
        self.batch_size.observe(messages)


@dataclass(slots=True, eq=False)  # hashed by identity: the registry keys on it
class IngestCollector(Collector):
    counters: Counters
    subscriber: Subscriber

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        for name, help_text, value in (
            ("zayton_ingest_messages", "MQTT messages taken", c.messages),
            ("zayton_ingest_readings_received", "Readings in telemetry batches", c.readings),
            ("zayton_ingest_readings_inserted", "Readings written", c.inserted),
            (
                "zayton_ingest_readings_duplicate",
                "Readings already stored (redelivered or replayed)",
                c.duplicates,
            ),
            (
                "zayton_ingest_batches_replayed",
                "Telemetry batches skipped whole as redeliveries",
                c.replayed_batches,
            ),
            ("zayton_ingest_dead_letters", "Payloads stored as dead letters", c.dead_letters),
            ("zayton_ingest_statuses", "Gateway status messages applied", c.statuses),
            ("zayton_ingest_counter_events", "Counter events stored", c.events),
            ("zayton_ingest_commits", "Database commits", c.commits),
            (
                "zayton_ingest_mqtt_reconnects",
                "Broker connections lost",
                self.subscriber.reconnects,
            ),
        ):
            counter = CounterMetricFamily(name, help_text)
            counter.add_metric([], float(value))
            yield counter
        for name, help_text, histogram in (
            ("zayton_ingest_batch_messages", "Messages per commit", c.batch_size),
            (
                "zayton_ingest_commit_seconds",
                "From taking a batch of messages to its commit",
                c.commit_latency,
            ),
            (
                "zayton_ingest_lag_seconds",
                "From a gateway sending a batch to its commit",
                c.lag,
            ),
        ):
            family = HistogramMetricFamily(name, help_text)
            family.add_metric([], buckets=histogram.buckets(), sum_value=histogram.sum)
            yield family
        for name, help_text, value in (
            (
                "zayton_ingest_queue_messages",
                "Messages received and not yet committed",
                self.subscriber.waiting,
            ),
            (
                "zayton_ingest_mqtt_connected",
                "1 while subscribed",
                1 if self.subscriber.subscribed.is_set() else 0,
            ),
            (
                "zayton_ingest_mqtt_reconnects",
                "Broker connections lost",
                self.subscriber.reconnects,
            ),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(value))
            yield gauge


def registry_for(collector: IngestCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
