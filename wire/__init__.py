"""The wire contract between Zayton gateways and the platform.

Everything a gateway and an ingester must agree on lives here and nowhere else: the MQTT topic
scheme, the payload models with their schema version, the broker connection settings and the
catalogue of metric names with their units. This package imports no other Zayton package.
"""

from wire.broker import BrokerSettings
from wire.catalogue import METRICS, Kind, Metric, metric
from wire.payload import (
    SCHEMA_VERSION,
    PayloadError,
    Quality,
    Reading,
    Status,
    Telemetry,
    parse_status,
    parse_telemetry,
)
from wire.topics import Stream, Topic, TopicError

__all__ = [
    "METRICS",
    "SCHEMA_VERSION",
    "BrokerSettings",
    "Kind",
    "Metric",
    "PayloadError",
    "Quality",
    "Reading",
    "Status",
    "Stream",
    "Telemetry",
    "Topic",
    "TopicError",
    "metric",
    "parse_status",
    "parse_telemetry",
]
