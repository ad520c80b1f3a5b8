"""Delivery over HTTPS to every endpoint (data centre) until each acknowledges.

Each endpoint has its URL and its TLS settings: the CA that signs its certificate (else the
system's), and a client certificate where the platform asks for one. A pass takes each
endpoint's due deliveries from the outbox, oldest first, and posts each stored body. An
acknowledged delivery is done for that endpoint; any other outcome (no connection, an HTTP
error, a reply that is not an acknowledgement) is recorded with its reason and retried after a
capped exponential backoff with jitter. After a failure the pass leaves that endpoint alone
until the next pass, so a data centre that is down costs one attempt per pass and never holds
up the others.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from api.monitoring.errors import ConfigError
from api.monitoring.formats import Reply, UploadFormat
from api.monitoring.outbox import Outbox, Pending
from api.monitoring.plugins import formats

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One data centre: where sets are posted and how its certificate is checked."""

    name: str
    url: str
    ca_file: Path | None = None
    """PEM file of the CA(s) that sign the server's certificate; None: the system's CAs."""
    client_cert: Path | None = None
    """PEM file of the client certificate (with its key, or see ``client_key``)."""
    client_key: Path | None = None
    timeout_s: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every upload (a token the platform issued, say)."""

    def __post_init__(self) -> None:
        if not self.url.startswith("https://"):
            raise ConfigError(f"endpoint {self.name}: uploads go over HTTPS, not {self.url}")
        if self.client_key is not None and self.client_cert is None:
            raise ConfigError(f"endpoint {self.name}: client_key without client_cert")

    def ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
            if self.client_cert is not None:
                context.load_cert_chain(
                    self.client_cert, self.client_key if self.client_key is not None else None
                )
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"endpoint {self.name}: {err}") from err
        return context


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1 after n failures: ``base_s · 2^(n-1)``, at most ``cap_s``,
    times a random factor in ``[1 - jitter, 1]`` so that units do not retry in step."""

    base_s: float = 30.0
    cap_s: float = 3600.0
    jitter: float = 0.5

    def delay(self, failures: int, rng: random.Random) -> timedelta:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(failures - 1, 0))
        return timedelta(seconds=ceiling * rng.uniform(1.0 - self.jitter, 1.0))


@dataclass(slots=True)
class EndpointPass:
    """What one pass did at one endpoint."""

    sent: int = 0
    acknowledged: int = 0
    error: str | None = None
    """The failure that ended the pass at this endpoint."""


class Uploader:
    """Posts the outbox's due deliveries to ``endpoints``; use it as a context manager (it
    holds one HTTPS client per endpoint)."""

    def __init__(
        self,
        outbox: Outbox,
        endpoints: Sequence[Endpoint],
        *,
        backoff: Backoff = Backoff(),
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        batch: int = 100,
    ) -> None:
        names = [e.name for e in endpoints]
        if sorted(names) != sorted(outbox.endpoints):
            raise ConfigError(f"the outbox delivers to {outbox.endpoints}, not {names}")
        self.outbox = outbox
        self.endpoints = list(endpoints)
        self.backoff = backoff
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        self.batch = batch
        self._clients: dict[str, httpx.Client] = {}
        self._failing: dict[str, int] = {}
        self._formats: dict[str, UploadFormat] = {}

    def __enter__(self) -> Self:
        for endpoint in self.endpoints:
            self._clients[endpoint.name] = httpx.Client(
                verify=endpoint.ssl_context(),
                timeout=endpoint.timeout_s,
                headers=dict(endpoint.headers),
            )
        self._formats = formats()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def upload_due(self) -> dict[str, EndpointPass]:
        """One pass over every endpoint; returns what it did at each."""
        if not self._clients:
            raise RuntimeError("use the Uploader as a context manager")
        return {endpoint.name: self._pass(endpoint) for endpoint in self.endpoints}

    def _pass(self, endpoint: Endpoint) -> EndpointPass:
        done = EndpointPass()
        for pending in self.outbox.due(endpoint.name, self.clock(), self.batch):
            done.sent += 1
            error = self._send(endpoint, pending)
            now = self.clock()
            if error is None:
                self.outbox.acknowledged(pending, now=now)
                done.acknowledged += 1
                continue
            retry_at = now + self.backoff.delay(pending.attempts + 1, self.rng)
            self.outbox.failed(pending, error, now=now, retry_at=retry_at)
            done.error = error
            self._note_failure(endpoint, pending, error, retry_at)
            return done
        if done.acknowledged and endpoint.name in self._failing:
            failures = self._failing.pop(endpoint.name)
            log.info("endpoint %s acknowledges again after %d failures", endpoint.name, failures)
        return done

    def _send(self, endpoint: Endpoint, pending: Pending) -> str | None:
        """None when acknowledged, else why not."""
        fmt = self._formats.get(pending.format)
        if fmt is None:
            return f"no upload format {pending.format!r} is installed"
        try:
            response = self._clients[endpoint.name].post(
                endpoint.url,
                content=pending.payload,
                headers={
                    "Content-Type": pending.content_type,
                    "Idempotency-Key": pending.message_id,
                },
            )
        except httpx.HTTPError as err:
            return f"{type(err).__name__}: {err}"
        reply = Reply(response.status_code, response.content, dict(response.headers))
        verdict = fmt.verdict(pending.message_id, reply)
        return None if verdict.acknowledged else verdict.reason or "not acknowledged"

    def _note_failure(
        self, endpoint: Endpoint, pending: Pending, error: str, retry_at: datetime
    ) -> None:
        failures = self._failing.get(endpoint.name, 0) + 1
        self._failing[endpoint.name] = failures
        level = logging.ERROR if failures == 1 else logging.DEBUG
        log.log(
            level,
            "endpoint %s did not acknowledge %s (attempt %d): %s; next attempt %s",
            endpoint.name,
            pending.message_id,
            pending.attempts + 1,
            error,
            retry_at.isoformat(),
        )
