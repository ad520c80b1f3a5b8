"""Prometheus metrics of one gateway, read from its live objects at scrape time.

Nothing is counted twice: the pollers, the outbox and the publisher keep plain counters on their
hot paths, and this collector turns them into metric families when Prometheus asks. Each gateway
has its own registry, so several gateways in one process (the demo) never mix their series.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.outbox import Outbox
from gateway.poller import DeviceReader
from wire.mqtt import Publisher
from wire.stats import Histogram


@dataclass(slots=True, eq=False)  # hashed by identity: the registry keys on it
class GatewayCollector(Collector):
    gateway: str
    readers: Sequence[DeviceReader]
    outbox: Outbox
    publisher: Publisher
    start_lag: Histogram

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        polls = CounterMetricFamily(
            "zayton_gateway_polls",
            "Polls by device and result",
            labels=["gateway", "device", "result"],
        )
        errors = CounterMetricFamily(
            "zayton_gateway_read_errors",
            "Failed read requests by device and kind",
            labels=["gateway", "device", "kind"],
        )
        readings = CounterMetricFamily(
            "zayton_gateway_readings", "Readings produced", labels=["gateway", "device"]
        )
        duration = HistogramMetricFamily(
            "zayton_gateway_poll_duration_seconds",
            "Time to read a device's whole plan",
            labels=["gateway", "device"],
        )
        online = GaugeMetricFamily(
            "zayton_gateway_device_up",
            "1 when the last poll read everything",
            labels=["gateway", "device"],
        )
        for reader in self.readers:
            health, name = reader.health, reader.device.name
            for result in ("ok", "partial", "failed"):
                polls.add_metric([gw, name, result], health.polls[result])
            for kind, count in health.errors.items():
                errors.add_metric([gw, name, kind], count)
            readings.add_metric([gw, name], health.readings)
            duration.add_metric(
                [gw, name], buckets=health.duration.buckets(), sum_value=health.duration.sum
            )
            online.add_metric([gw, name], 1.0 if health.state == "online" else 0.0)
        yield from (polls, errors, readings, duration, online)

        lag = HistogramMetricFamily(
            "zayton_gateway_poll_start_lag_seconds",
            "How late polls start after their wall-clock tick",
            labels=["gateway"],
        )
        lag.add_metric([gw], buckets=self.start_lag.buckets(), sum_value=self.start_lag.sum)
        yield lag

        box = self.outbox
        for name, help_text, value in (
            ("zayton_gateway_outbox_bytes", "Bytes of readings not yet acknowledged", box.bytes),
            ("zayton_gateway_outbox_batches", "Batches cut and not yet acknowledged", box.batches),
            (
                "zayton_gateway_outbox_oldest_age_seconds",
                "Age of the oldest reading not yet acknowledged",
                box.oldest_age(),
            ),
            ("zayton_gateway_outbox_max_bytes", "Size limit of the outbox", box.max_bytes),
            (
                "zayton_gateway_mqtt_in_flight",
                "Messages sent and not acknowledged",
                self.publisher.in_flight,
            ),
            (
                "zayton_gateway_mqtt_connected",
                "1 while connected to the broker",
                1 if self.publisher.connected.is_set() else 0,
            ),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=["gateway"])
            gauge.add_metric([gw], float(value))
            yield gauge
        for name, help_text, value in (
            (
                "zayton_gateway_batches_cut",
                "Telemetry batches cut from the outbox",
                box.cut_batches,
            ),
            (
                "zayton_gateway_batches_acknowledged",
                "Telemetry batches acknowledged by the broker",
                box.acknowledged,
            ),
            (
                "zayton_gateway_outbox_dropped_readings",
                "Readings dropped from a full outbox (drop-oldest)",
                box.dropped_readings,
            ),
            (
                "zayton_gateway_outbox_refused_polls",
                "Polls skipped while the outbox was full (block)",
                box.refused_polls,
            ),
            (
                "zayton_gateway_mqtt_reconnects",
                "Broker connections lost or attempts failed",
                self.publisher.reconnects,
            ),
        ):
            counter = CounterMetricFamily(name, help_text, labels=["gateway"])
            counter.add_metric([gw], float(value))
            yield counter


def registry_for(collector: GatewayCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
