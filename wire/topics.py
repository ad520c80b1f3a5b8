"""MQTT topic scheme, version 1.

    <root>/v1/<site>/<gateway>/<stream>

``root`` is ``zayton`` unless a deployment (or a test run) chooses its own, ``site`` is the
premises a gateway belongs to (a firm's factory), ``gateway`` is the gateway id, unique within the
site, and ``stream`` is one of :class:`Stream`. Identifiers are 1–64 characters of letters, digits,
``_`` and ``-`` so that they can never contain the MQTT separators or wildcards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

VERSION_SEGMENT = "v1"
DEFAULT_ROOT = "zayton"

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ROOT = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}")


class TopicError(ValueError):
    """A topic or an identifier that does not fit the scheme."""


class Stream(StrEnum):
    TELEMETRY = "telemetry"
    """Batches of readings, QoS 1."""
    STATUS = "status"
    """Retained gateway state (online/offline) with its metadata; the last will says offline."""


def check_identifier(kind: str, value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise TopicError(
            f"{kind} {value!r} is not a valid identifier "
            "(1-64 letters, digits, '_' or '-', starting with a letter or digit)"
        )
    return value


def check_root(root: str) -> str:
    if not _ROOT.fullmatch(root):
        raise TopicError(f"topic root {root!r} must be 1-4 levels of letters, digits, '_' or '-'")
    return root


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    gateway: str
    stream: Stream
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        check_root(self.root)
        check_identifier("site", self.site)
        check_identifier("gateway", self.gateway)

    def __str__(self) -> str:
        return f"{self.root}/{VERSION_SEGMENT}/{self.site}/{self.gateway}/{self.stream.value}"

    @classmethod
    def parse(cls, topic: str, *, root: str = DEFAULT_ROOT) -> Topic:
        prefix = f"{root}/{VERSION_SEGMENT}/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} is not under {prefix!r}")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 3:
            raise TopicError(f"topic {topic!r} is not {prefix}<site>/<gateway>/<stream>")
        site, gateway, stream = parts
        try:
            kind = Stream(stream)
        except ValueError:
            raise TopicError(f"topic {topic!r} names unknown stream {stream!r}") from None
        return cls(site=site, gateway=gateway, stream=kind, root=root)


def subscription(
    stream: Stream, *, root: str = DEFAULT_ROOT, share_group: str | None = None
) -> str:
    """The filter that matches one stream of every gateway of every site.

    With ``share_group`` it is an MQTT 5 / mosquitto shared subscription, so several ingesters of
    the same group split the load.
    """
    check_root(root)
    pattern = f"{root}/{VERSION_SEGMENT}/+/+/{stream.value}"
    if share_group is None:
        return pattern
    return f"$share/{check_identifier('share group', share_group)}/{pattern}"
