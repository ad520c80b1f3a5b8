"""The exceptions of the online-monitoring upload: one tree, so a caller can catch them all."""

from __future__ import annotations


class MonitoringError(Exception):
    """Anything the online-monitoring upload cannot do."""


class CodeError(MonitoringError, ValueError):
    """A data-item code that is not 16 digits in its seven fields."""


class ConfigError(MonitoringError):
    """A unit, data item, endpoint or coefficient configuration that cannot be used."""


class FormatError(MonitoringError):
    """An upload format that is not registered, or a plug-in that does not load."""
