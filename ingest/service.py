"""The ingest loop: take messages by count and age, validate, store in one commit, then ack.

A bad payload becomes a dead letter with its reason in the same commit as the good payloads
around it, so it never stalls good traffic and is never lost. If the database fails, nothing is
acknowledged: the loop reconnects with a capped, jittered backoff and stores the same messages
again (duplicates are absorbed by the primary key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from wsgiref.simple_server import WSGIServer

import psycopg
from prometheus_client import start_http_server

from ingest.metrics import Counters, IngestCollector, registry_for
from ingest.rollups import Maintenance, maintain
from ingest.store import Accepted, Rejected, StatusUpdate, Store, WriteResult
from wire.broker import BrokerSettings
from wire.mqtt import Message, Subscriber
from wire.payload import PayloadError, parse_status, parse_telemetry
from wire.topics import DEFAULT_ROOT, Stream, Topic, TopicError, subscription

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestSettings:
    database_url: str
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    topic_root: str = DEFAULT_ROOT
    client_id: str = "zayton-ingest"
    share_group: str | None = None
    batch_max_messages: int = 500
    batch_max_bytes: int = 4 << 20
    """A write takes messages until this many payload bytes (about 40,000 readings)."""
    batch_max_age_s: float = 0.2
    max_pending: int = 2000
    max_future_s: float = 300.0
    """Readings stamped further in the future are refused (a gateway clock gone wrong)."""
    max_past_days: float = 400.0
    """Readings older than this are refused (a year of backfill fits)."""
    rollup_refresh_s: float = 10.0
    """How often rollups take in what arrived (plain PostgreSQL; TimescaleDB's policies run
    on their own)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (0: any free port; None: no endpoint)."""
    metrics_host: str = "127.0.0.1"
    auto_register: bool = True
    """A device registers itself with its first reading; False: only devices a gateway
    announced in its status are taken, batches naming others are dead letters."""
    keep_days: int | None = None
    """Raw readings older than this many days are dropped (rollups stay); None keeps all."""
    latest_interval_s: float = 1.0
    """How often the latest value of each point moves forward (see :class:`Store`)."""


@dataclass(slots=True)
class Sorted:
    """One batch of messages, sorted by what they are."""

    accepted: list[Accepted] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, item: Accepted | StatusUpdate | Rejected) -> None:
        if isinstance(item, Accepted):
            self.accepted.append(item)
        elif isinstance(item, StatusUpdate):
            self.statuses.append(item)
        else:
            log.warning("dead letter from %s: %s", item.topic, item.reason)
            self.rejected.append(item)


def classify(
    message: Message, settings: IngestSettings, now: datetime
) -> Accepted | StatusUpdate | Rejected:
    """Decide what a message is; every way it can be bad ends in a :class:`Rejected` reason."""
    try:
        topic = Topic.parse(message.topic, root=settings.topic_root)
        if topic.stream is Stream.STATUS:
            return StatusUpdate(topic, parse_status(message.payload, topic))
        batch = parse_telemetry(message.payload, topic)
    except (TopicError, PayloadError) as err:
        return Rejected(message.topic, message.payload, str(err))
    newest = now + timedelta(seconds=settings.max_future_s)
    oldest = now - timedelta(days=settings.max_past_days)
    outside = {text for text, at in batch.stamps.items() if not oldest <= at <= newest}
    if outside:
        index = next(i for i, r in enumerate(batch.readings) if r.stamp in outside)
        return Rejected(
            message.topic,
            message.payload,
            f"readings.{index}.ts {batch.readings[index].ts.isoformat()} is outside the "
            f"accepted window ({settings.max_past_days:g} days back, "
            f"{settings.max_future_s:g} s ahead)",
        )
    return Accepted(topic, batch, message.payload)


async def next_batch(
    subscriber: Subscriber, max_messages: int, max_age_s: float, max_bytes: int
) -> list[Message]:
    """Wait for one message, then gather more until the count, size or age limit."""
    batch = [await subscriber.get()]
    size = len(batch[0].payload)
    deadline = asyncio.get_running_loop().time() + max_age_s
    while len(batch) < max_messages and size < max_bytes:
        message = subscriber.get_nowait()
        if message is None:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await subscriber.get()
            except TimeoutError:
                break
        batch.append(message)
        size += len(message.payload)
    return batch


@dataclass(slots=True)
class _Taken:
    messages: list[Message]
    batch: Sorted
    at: float
    """time.monotonic() when the first message was taken."""


async def _take(
    settings: IngestSettings,
    subscriber: Subscriber,
    stop: asyncio.Event,
    queue: asyncio.Queue[_Taken],
) -> None:
    """First stage: gather and validate messages while the database writes the previous
    write; validation yields between messages, so the writer's replies are never kept waiting
    for long."""
    while not stop.is_set():
        waiter = asyncio.create_task(
            next_batch(
                subscriber,
                settings.batch_max_messages,
                settings.batch_max_age_s,
                settings.batch_max_bytes,
            )
        )
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if waiter not in done:
            waiter.cancel()
            break
        messages = waiter.result()
        taken = time.monotonic()
        now = datetime.now(UTC)
        batch = Sorted()
        for message in messages:
            batch.add(classify(message, settings, now))
            await asyncio.sleep(0)
        await queue.put(_Taken(messages, batch, taken))


async def _next_taken(queue: asyncio.Queue[_Taken], taker: asyncio.Task[None]) -> _Taken | None:
    """The next validated batch; None once the first stage has ended (stopped or failed)
    and left nothing behind."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.create_task(queue.get())
    await asyncio.wait([getter, taker], return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    return queue.get_nowait() if not queue.empty() else None


async def _connect(settings: IngestSettings) -> Store:
    return await Store.connect(
        settings.database_url,
        auto_register=settings.auto_register,
        latest_interval_s=settings.latest_interval_s,
    )


async def store_with_retry(
    settings: IngestSettings, store: Store | None, batch: Sorted, stop: asyncio.Event
) -> tuple[Store | None, WriteResult | None]:
    """Write one batch, reconnecting until the database takes it or ``stop`` is set.

    Returns no result when stopped first: the batch was not stored and must not be acknowledged.
    """
    delay = 0.5
    while True:
        try:
            if store is None:
                store = await _connect(settings)
            return store, await store.write(batch.accepted, batch.statuses, batch.rejected)
        except psycopg.OperationalError as err:
            log.error("database unavailable (%s); retrying in %.1f s", err, delay)  # noqa: TRY400
            if store is not None:
                await store.close()
                store = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):  # noqa: S311
                    await stop.wait()
            if stop.is_set():
                return store, None
            delay = min(delay * 2, 30.0)


async def run_ingester(
    settings: IngestSettings,
    stop: asyncio.Event,
    counters: Counters | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Ingest until ``stop`` is set; what was taken but not committed is left unacknowledged.

    ``ready`` is set once the broker has confirmed the subscriptions.
    """
    counters = counters or Counters()
    connected = await _connect(settings)
    storage = connected.storage
    store: Store | None = connected
    filters = [
        subscription(stream, root=settings.topic_root, share_group=settings.share_group)
        for stream in (Stream.TELEMETRY, Stream.STATUS)
    ]
    subscriber = Subscriber(
        BrokerSettings.from_url(settings.mqtt_url),
        client_id=settings.client_id,
        filters=filters,
        max_pending=settings.max_pending,
    )
    finished = asyncio.Event()
    upkeep = asyncio.create_task(
        maintain(
            settings.database_url,
            storage,
            Maintenance(refresh_interval_s=settings.rollup_refresh_s, keep_days=settings.keep_days),
            finished,
        ),
        name="rollups",
    )
    metrics_server: WSGIServer | None = None
    try:
        async with subscriber:
            if settings.metrics_port is not None:
                registry = registry_for(IngestCollector(counters, subscriber))
                metrics_server, _ = start_http_server(
                    settings.metrics_port, settings.metrics_host, registry
                )
                log.info("metrics on http://%s:%d/metrics", *metrics_server.server_address[:2])
            log.info("ingesting %s into the database", filters)
            if ready is not None:
                watcher = asyncio.create_task(subscriber.subscribed.wait())
                watcher.add_done_callback(lambda _: ready.set())
            # Two stages: validation of the next messages overlaps the database's work on
            # the current ones (the database is a process of its own, on another core).
            queue: asyncio.Queue[_Taken] = asyncio.Queue(maxsize=1)
            taker = asyncio.create_task(_take(settings, subscriber, stop, queue), name="take")
            try:
                while (taken := await _next_taken(queue, taker)) is not None:
                    store, result = await store_with_retry(settings, store, taken.batch, stop)
                    if result is None:
                        break
                    subscriber.ack(taken.messages)
                    counters.add(len(taken.messages), result)
                    counters.commit_latency.observe(time.monotonic() - taken.at)
                    committed = datetime.now(UTC)
                    for item in taken.batch.accepted:
                        lag = (committed - item.batch.sent_at).total_seconds()
                        counters.lag.observe(max(0.0, lag))
            finally:
                taker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await taker
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        finished.set()
        await upkeep
        if store is not None:
            await store.close()


@contextlib.asynccontextmanager
async def ingesting(
    settings: IngestSettings, *, ready_timeout_s: float = 20.0
) -> AsyncIterator[Counters]:
    """The ingester running in the background, subscribed, for the length of the block; its
    counters are what the block sees. On leaving, it stops and its error (if any) is raised."""
    stop, ready, counters = asyncio.Event(), asyncio.Event(), Counters()
    task = asyncio.create_task(run_ingester(settings, stop, counters, ready))
    try:
        async with asyncio.timeout(ready_timeout_s):
            await ready.wait()
        yield counters
    finally:
        stop.set()
        await task
