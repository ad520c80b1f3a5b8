"""The only gateway module that talks paho-mqtt: QoS 1 publishing that completes on PUBACK.

paho runs its network loop in a thread; acknowledgements cross into asyncio through
``call_soon_threadsafe``. The session is persistent (clean_session=False), so messages in flight
when the connection drops are sent again after the reconnect, and a retained status message with a
last will tells the platform whether the gateway is online.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from wire.broker import BrokerSettings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The client refused a message (its queue is full); the message was not sent."""


class Publisher:
    def __init__(
        self,
        settings: BrokerSettings,
        *,
        client_id: str,
        status_topic: str,
        online: bytes,
        offline: bytes,
        max_in_flight: int = 50,
    ) -> None:
        self._settings = settings
        self._status_topic = status_topic
        self._online = online
        self._offline = offline
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
        client.will_set(status_topic, offline, qos=1, retain=True)
        client.max_inflight_messages_set(max_in_flight)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
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
        if self.connected.is_set():
            try:
                async with asyncio.timeout(2):
                    await self.publish(self._status_topic, self._offline, retain=True)
            except (TimeoutError, PublishError):
                log.warning("could not publish the offline status before disconnecting")
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and return when the broker has acknowledged the message."""
        if self._loop is None:
            raise RuntimeError("use the publisher inside 'async with'")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN is fine: paho keeps the message and sends it once reconnected.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        # The acknowledgement reaches this loop through call_soon_threadsafe, so it cannot be
        # handled before the future is registered here, with no await in between.
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = future
        await future

    def _acknowledged(self, mid: int) -> None:
        future = self._pending.pop(mid, None)
        if future is not None and not future.done():  # None: the status sent on connect
            future.set_result(None)

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
        log.info("connected to %s", self._settings.url())
        client.publish(self._status_topic, self._online, qos=1, retain=True)
        self._call(self.connected.set)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self._call(self.connected.clear)
        if reason_code.value != 0:
            self.reconnects += 1
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        # Called with paho's message mutex held: take no lock here, hand over to the loop.
        self._call(lambda: self._acknowledged(mid))

    def _call(self, callback: Callable[[], object]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)
