"""The gateway service: pollers store every poll in the outbox, a forwarder cuts batches from it
by size and age and publishes them, and the status topic carries device health.

Nothing leaves the outbox before the broker acknowledges it, so a lost connection, a broker
restart or a killed gateway costs no reading: on the next connection (or start) the outbox is
published again, oldest first, with the sequence numbers the batches were given when cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from gateway.config import GatewayConfig
from gateway.metrics import GatewayCollector, registry_for
from gateway.modbus import Link, links_for
from gateway.outbox import Batch, Outbox
from gateway.poller import DeviceReader, Poll, poll_forever
from gateway.sparkplug_node import SparkplugNode
from wire.mqtt import Publisher
from wire.payload import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, Status, encode_status
from wire.stats import Histogram
from wire.topics import Stream, Topic

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 5.0
HEALTH_CHECK_S = 1.0


class Forwarder:
    """Publishes the outbox: first the batches a previous run cut and never saw acknowledged,
    then new batches, each cut when ``batch_max_readings`` wait or the oldest has waited
    ``batch_max_age_s``. At most ``max_in_flight`` batches are unacknowledged at once."""

    def __init__(self, config: GatewayConfig, outbox: Outbox, publisher: Publisher) -> None:
        gateway, mqtt = config.gateway, config.mqtt
        self._topic = str(Topic(gateway.site, gateway.id, Stream.TELEMETRY, mqtt.topic_root))
        self._outbox = outbox
        self._publisher = publisher
        self._max_readings = mqtt.batch_max_readings
        self._max_age_s = mqtt.batch_max_age_s
        self._unacknowledged: set[asyncio.Future[None]] = set()

    async def run(self) -> None:
        # One stored batch in memory at a time: after a long outage the outbox can hold far
        # more than the gateway should keep in memory.
        for stored in self._outbox.stored_batches():
            await self._send(stored)
        while True:
            await self._ready()
            batch = self._outbox.cut(self._max_readings, MAX_PAYLOAD_BYTES)
            if batch is not None:
                await self._send(batch)

    async def drain(self) -> None:
        """Cut and publish what is left, and wait for the acknowledgements."""
        while (batch := self._outbox.cut(self._max_readings, MAX_PAYLOAD_BYTES)) is not None:
            await self._send(batch)
        await self._publisher.drain()
        if self._unacknowledged:
            # Their callbacks (registered first) run before this wait returns.
            await asyncio.wait(set(self._unacknowledged))

    async def _ready(self) -> None:
        outbox = self._outbox
        while True:
            if outbox.uncut_readings >= self._max_readings:
                return
            oldest = outbox.oldest_uncut()
            left = None if oldest is None else oldest + self._max_age_s - time.time()
            if left is not None and left <= 0:
                return
            outbox.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await outbox.changed.wait()

    async def _send(self, batch: Batch) -> None:
        ack = await self._publisher.send(self._topic, batch.payload)
        seq, outbox, unacknowledged = batch.seq, self._outbox, self._unacknowledged

        def acknowledged(future: asyncio.Future[None]) -> None:
            unacknowledged.discard(future)
            if not future.cancelled() and future.exception() is None:
                outbox.acknowledge(seq)

        unacknowledged.add(ack)
        ack.add_done_callback(acknowledged)


def status_payload(
    config: GatewayConfig,
    state: str,
    readers: Sequence[DeviceReader] = (),
    outbox: Outbox | None = None,
) -> bytes:
    gateway = config.gateway
    return encode_status(
        Status(
            schema_version=SCHEMA_VERSION,
            gateway=gateway.id,
            state="online" if state == "online" else "offline",
            ts=datetime.now(UTC),
            site=gateway.site,
            firm=gateway.firm,
            uplink=gateway.uplink,
            software=f"zayton-gateway {version('zayton')}",
            devices=[reader.health.status() for reader in readers],
            alarms=outbox.alarms() if outbox is not None else [],
            outbox_batches=outbox.batches if outbox is not None else None,
        )
    )


async def report_health(
    config: GatewayConfig,
    readers: Sequence[DeviceReader],
    outbox: Outbox,
    publisher: Publisher,
    sparkplug: SparkplugNode | None = None,
) -> None:
    """Republish the retained status when a device changes state or an alarm changes, and
    every ``status_interval_s`` anyway; tell Sparkplug hosts of devices gone offline."""
    interval = config.gateway.status_interval_s
    last_sent, last_alarms = time.monotonic(), outbox.alarms()
    while True:
        await asyncio.sleep(HEALTH_CHECK_S)
        if sparkplug is not None:
            sparkplug.check_health()
        changed = any(reader.health.changed for reader in readers)
        alarms = outbox.alarms()
        if not changed and alarms == last_alarms and time.monotonic() - last_sent < interval:
            continue
        for reader in readers:
            reader.health.changed = False
        if alarms != last_alarms:
            for alarm in set(alarms) - set(last_alarms):
                log.error("alarm: %s", alarm)
        last_sent, last_alarms = time.monotonic(), alarms
        await publisher.update_status(status_payload(config, "online", readers, outbox))


async def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait for them, cancelling again any that swallowed the cancellation (a
    library's ``wait_for`` can lose one when its answer arrives in the same turn of the loop)."""
    pending = set(tasks)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in pending:
        log.error("task %r did not stop within %.0f s", task.get_name(), DRAIN_TIMEOUT_S)


def freeze_startup_objects() -> None:
    """Everything built so far lives as long as the gateway: keep it out of the collector's
    full passes, which otherwise stall the event loop for tens of milliseconds."""
    gc.collect()
    gc.freeze()


def open_outbox(config: GatewayConfig) -> Outbox:
    gateway, settings = config.gateway, config.outbox
    return Outbox(
        config.state_dir / f"{gateway.id}.outbox.sqlite",
        gateway.id,
        max_bytes=int(settings.max_mb * 1_000_000),
        when_full=settings.when_full,
        sync=settings.sync,
        commit_interval_s=settings.commit_interval_s,
        wake_readings=config.mqtt.batch_max_readings,
        legacy_seq=config.state_dir / f"{gateway.id}.seq",
    )


def bind_readers(
    config: GatewayConfig, outbox: Outbox
) -> tuple[dict[str, Link], list[DeviceReader]]:
    """One link per bus and one reader per device, counters restored from the outbox."""
    links = links_for(config.devices)
    states = outbox.counter_states()
    readers = [
        DeviceReader(device, links[device.config.bus], states.get(device.name))
        for device in config.devices
    ]
    return links, readers


async def run_gateway(config: GatewayConfig, stop: asyncio.Event) -> None:
    """Poll and publish until ``stop`` is set, then drain what it can and disconnect.

    What is not acknowledged by then stays in the outbox for the next start.
    """
    gateway, mqtt = config.gateway, config.mqtt
    outbox = open_outbox(config)
    links, readers = bind_readers(config, outbox)
    status_topic = str(Topic(gateway.site, gateway.id, Stream.STATUS, mqtt.topic_root))
    publisher = Publisher(
        mqtt.broker,
        client_id=mqtt.client_id or f"zayton-gw-{gateway.site}-{gateway.id}",
        status_topic=status_topic,
        online=status_payload(config, "online", readers, outbox),
        offline=status_payload(config, "offline"),
        max_in_flight=mqtt.max_in_flight,
    )
    lag = Histogram()
    metrics_server: WSGIServer | None = None
    freeze_startup_objects()
    try:
        async with publisher:
            if gateway.metrics_port is not None:
                collector = GatewayCollector(gateway.id, readers, outbox, publisher, lag)
                metrics_server, _ = start_http_server(
                    gateway.metrics_port, gateway.metrics_host, registry_for(collector)
                )
                log.info("metrics on http://%s:%d/metrics", *metrics_server.server_address[:2])
            forwarder = Forwarder(config, outbox, publisher)
            async with contextlib.AsyncExitStack() as stack:
                node = None
                if config.sparkplug is not None:
                    node = SparkplugNode(config, readers, outbox)
                    await stack.enter_async_context(node.session)
                await _run(
                    config,
                    stop,
                    readers=readers,
                    outbox=outbox,
                    publisher=publisher,
                    forwarder=forwarder,
                    lag=lag,
                    sparkplug=node,
                )
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        for link in links.values():
            await link.close()
        if outbox.batches or outbox.uncut_readings:
            log.warning(
                "stopping with %d batch(es) and %d uncut reading(s) in the outbox; they are sent "
                "on the next start",
                outbox.batches,
                outbox.uncut_readings,
            )
        outbox.close()


async def _run(
    config: GatewayConfig,
    stop: asyncio.Event,
    *,
    readers: list[DeviceReader],
    outbox: Outbox,
    publisher: Publisher,
    forwarder: Forwarder,
    lag: Histogram,
    sparkplug: SparkplugNode | None = None,
) -> None:
    gateway = config.gateway
    deliver: Callable[[Poll], None] = outbox.add
    if sparkplug is not None:
        node = sparkplug

        def deliver(poll: Poll) -> None:
            outbox.add(poll)
            node.deliver(poll)

    tasks = [
        asyncio.create_task(
            poll_forever(reader, deliver, may_poll=outbox.accepting, lag=lag),
            name=f"poll {reader.device.name}",
        )
        for reader in readers
    ]
    tasks.append(asyncio.create_task(forwarder.run(), name="forward"))
    tasks.append(
        asyncio.create_task(
            report_health(config, readers, outbox, publisher, sparkplug), name="health"
        )
    )
    log.info(
        "gateway %s/%s polling %d device(s), publishing to %s",
        gateway.site,
        gateway.id,
        len(readers),
        config.mqtt.broker.url(),
    )
    stopped = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()  # a poller or the forwarder died: raise its error
    finally:
        await _cancel([*tasks, stopped])
        if publisher.connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await forwarder.drain()
        outbox.flush()
