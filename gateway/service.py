"""The gateway service: pollers feed a bounded buffer, a forwarder publishes it in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from importlib.metadata import version

from gateway.buffer import ReadingBuffer
from gateway.config import GatewayConfig
from gateway.modbus import TcpLink
from gateway.poller import poll_forever
from gateway.sequence import SequenceLease
from wire.mqtt import Publisher
from wire.payload import SCHEMA_VERSION, Status, encode_status, encode_telemetry
from wire.topics import Stream, Topic

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 5.0


class Forwarder:
    """Takes batches from the buffer by size and age and publishes them, a bounded number in
    flight; each batch gets the next sequence number when it is cut, so numbers follow the order
    in which batches are sent."""

    def __init__(self, config: GatewayConfig, buffer: ReadingBuffer, publisher: Publisher) -> None:
        gateway, mqtt = config.gateway, config.mqtt
        self._gateway_id = gateway.id
        self._topic = str(Topic(gateway.site, gateway.id, Stream.TELEMETRY, mqtt.topic_root))
        self._buffer = buffer
        self._publisher = publisher
        self._max_readings = mqtt.batch_max_readings
        self._max_age_s = mqtt.batch_max_age_s
        self._sequence = SequenceLease(config.state_dir / f"{gateway.id}.seq")
        self._slots = asyncio.Semaphore(mqtt.max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self.published = 0

    async def run(self) -> None:
        while True:
            await self._buffer.ready(self._max_readings, self._max_age_s)
            if len(self._buffer):
                await self._send_next()

    async def drain(self) -> None:
        """Publish what is left and wait for the acknowledgements."""
        while len(self._buffer):
            await self._send_next()
        if self._in_flight:
            await asyncio.wait(self._in_flight)

    async def _send_next(self) -> None:
        await self._slots.acquire()
        readings = self._buffer.take(self._max_readings)
        payload = encode_telemetry(
            self._gateway_id, self._sequence.next(), datetime.now(UTC), readings
        )
        task = asyncio.create_task(self._publish(payload), name="publish batch")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _publish(self, payload: bytes) -> None:
        try:
            await self._publisher.publish(self._topic, payload)
            self.published += 1
        finally:
            self._slots.release()


def status_payload(config: GatewayConfig, state: str) -> bytes:
    gateway = config.gateway
    return encode_status(
        Status(
            schema_version=SCHEMA_VERSION,
            gateway=gateway.id,
            state="online" if state == "online" else "offline",
            ts=datetime.now(UTC),
            firm=gateway.firm,
            uplink=gateway.uplink,
            software=f"zayton-gateway {version('zayton')}",
        )
    )


async def run_gateway(config: GatewayConfig, stop: asyncio.Event) -> None:
    """Poll and publish until ``stop`` is set, then drain the buffer and disconnect."""
    gateway, mqtt = config.gateway, config.mqtt
    buffer = ReadingBuffer(mqtt.buffer_max_readings)
    links: dict[tuple[str, int], TcpLink] = {}
    for device in config.devices:
        key = (device.config.host, device.config.port)
        links.setdefault(key, TcpLink(*key))
    publisher = Publisher(
        mqtt.broker,
        client_id=mqtt.client_id or f"zayton-gw-{gateway.site}-{gateway.id}",
        status_topic=str(Topic(gateway.site, gateway.id, Stream.STATUS, mqtt.topic_root)),
        online=status_payload(config, "online"),
        offline=status_payload(config, "offline"),
        max_in_flight=mqtt.max_in_flight,
    )
    async with publisher:
        forwarder = Forwarder(config, buffer, publisher)
        tasks = [
            asyncio.create_task(
                poll_forever(d, links[d.config.host, d.config.port], buffer.put),
                name=f"poll {d.name}",
            )
            for d in config.devices
        ]
        tasks.append(asyncio.create_task(forwarder.run(), name="forward"))
        log.info(
            "gateway %s/%s polling %d device(s), publishing to %s",
            gateway.site,
            gateway.id,
            len(config.devices),
            mqtt.broker.url(),
        )
        try:
            stopped = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped:
                    task.result()  # a poller or the forwarder died: raise its error
        finally:
            for task in [*tasks, stopped]:
                task.cancel()
            _, stuck = await asyncio.wait([*tasks, stopped], timeout=DRAIN_TIMEOUT_S)
            for task in stuck:
                log.error("task %r did not stop within %.0f s", task.get_name(), DRAIN_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await forwarder.drain()
            if len(buffer):
                log.warning("stopping with %d readings unpublished", len(buffer))
            for link in links.values():
                await link.close()
