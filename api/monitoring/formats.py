"""The interface of an upload format: each province's message schema is one.

A format names itself, turns an indicator set into the body its platform takes, and decides
whether the platform's reply acknowledges a message. :mod:`api.monitoring.plugins` finds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from api.monitoring.build import IndicatorSet


@dataclass(frozen=True, slots=True)
class Reply:
    """A platform's answer to one upload, as the format sees it."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    acknowledged: bool
    reason: str = ""
    """Why not: kept as the delivery's last error."""


@runtime_checkable
class UploadFormat(Protocol):
    """A province's message format."""

    @property
    def name(self) -> str:
        """What units name the format by (``zayton.monitoring_units.format``)."""
        ...

    @property
    def content_type(self) -> str: ...

    def encode(self, indicator_set: IndicatorSet) -> bytes:
        """The message body of one revision of a set."""
        ...

    def verdict(self, message_id: str, reply: Reply) -> Verdict:
        """Whether ``reply`` acknowledges the message ``message_id``."""
        ...
