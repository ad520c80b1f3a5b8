"""The only ingest module that talks paho-mqtt: QoS 1 subscriptions acknowledged after commit.

Messages are acknowledged with PUBACK only once the database has committed them (paho's
``manual_ack``), and the session is persistent, so a crash loses nothing: the broker delivers
again what was not acknowledged. At most ``max_pending`` messages wait unacknowledged; beyond that
paho's network thread waits, which holds the broker back through TCP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from wire.broker import BrokerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Subscriber:
    def __init__(
        self,
        settings: BrokerSettings,
        *,
        client_id: str,
        filters: list[str],
        max_pending: int = 2000,
    ) -> None:
        self._settings = settings
        self._filters = filters
        self._slots = threading.BoundedSemaphore(max_pending)
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.subscribed = asyncio.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(
            self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s
        )
        self._client.loop_start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._client.disconnect()
        # Unblock the network thread if it waits for a slot, so that it can stop.
        for _ in range(64):
            try:
                self._slots.release()
            except ValueError:
                break
        await asyncio.to_thread(self._client.loop_stop)

    async def get(self) -> Message:
        return await self._queue.get()

    def get_nowait(self) -> Message | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def ack(self, messages: Iterable[Message]) -> None:
        """Acknowledge messages whose content the database has committed."""
        for message in messages:
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)
            self._slots.release()

    # Callbacks below run on paho's network thread.

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self._settings.url(), reason_code)
            return
        log.info("connected to %s, subscribing to %s", self._settings.url(), self._filters)
        client.subscribe([(f, 1) for f in self._filters])

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused a subscription: %s", reason_codes)
            return
        self._call(self.subscribed.set)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self._call(self.subscribed.clear)
        if reason_code.value != 0 and not self._closing:
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._slots.acquire()
        if self._closing:
            return
        message = Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
        self._call(lambda: self._queue.put_nowait(message))

    def _call(self, callback: Callable[[], object]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)
