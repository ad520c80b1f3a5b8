"""Zayton's reference upload format: its own JSON, documented in docs/monitoring.md.

It is no province's schema (each province publishes its own): it shows what a format carries
and is what Zayton's tests and a province-less deployment use. A platform acknowledges a message
by answering HTTP 200 with ``{"ack": "<message_id>"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC

from api.monitoring.build import IndicatorSet
from api.monitoring.formats import Reply, Verdict

SCHEMA = "zayton-monitoring/1"


@dataclass(frozen=True, slots=True)
class ZaytonJson:
    name: str = "zayton-json"
    content_type: str = "application/json"

    def encode(self, indicator_set: IndicatorSet) -> bytes:
        s = indicator_set
        body = {
            "schema": SCHEMA,
            "message_id": s.message_id,
            "unit_code": s.unit_code,
            "frequency": int(s.period.frequency),
            "period_start": s.period.local_start.isoformat(),
            "period_end": s.period.end.astimezone(s.period.local_start.tzinfo).isoformat(),
            "revision": s.revision,
            "built_at": s.built_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "electricity_basis": s.basis.value,
            "placeholder_coefficients": list(s.placeholders),
            "completeness": round(s.completeness, 4),
            "items": [
                {
                    "code": str(v.code),
                    "name": v.name,
                    "source": int(v.source),
                    "value": v.value,
                    "unit": v.unit,
                    "present": v.present,
                    "expected": v.expected,
                }
                for v in s.values
            ],
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def verdict(self, message_id: str, reply: Reply) -> Verdict:
        if reply.status != 200:
            return Verdict(False, f"HTTP {reply.status}: {_excerpt(reply.body)}")
        try:
            answer = json.loads(reply.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Verdict(False, f"not an acknowledgement: {_excerpt(reply.body)}")
        if not isinstance(answer, dict) or answer.get("ack") != message_id:
            return Verdict(False, f"not an acknowledgement of {message_id}: {_excerpt(reply.body)}")
        return Verdict(True)


def _excerpt(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", errors="replace").strip()
    return (text + ("…" if len(body) > limit else "")) or "(empty body)"


REFERENCE = ZaytonJson()
