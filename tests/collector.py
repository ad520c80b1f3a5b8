"""An independent MQTT subscriber for tests: plain paho, keeps every message it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from wire.broker import BrokerSettings


class Collector:
    """A plain paho subscriber (QoS 1) that keeps every message it receives.

    It subscribes again on every reconnect. With ``persistent`` its session outlives the
    connection, so a broker that keeps sessions queues what arrives while it is away.
    """

    def __init__(
        self, mqtt_url: str, topic_filter: str, client_id: str, *, persistent: bool = False
    ) -> None:
        self.settings = BrokerSettings.from_url(mqtt_url)
        self.topic_filter = topic_filter
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def __enter__(self) -> Self:
        self._client.connect(self.settings.host, self.settings.port)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"
        return self

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic_filter, qos=1)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def wait_until(
        self, check: Callable[[list[tuple[str, bytes]]], bool], timeout_s: float
    ) -> bool:
        """Wait until ``check`` holds for the messages received so far; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not check(self.snapshot()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, expected: int, timeout_s: float = 30.0, settle_s: float = 0.5) -> None:
        """Wait until ``expected`` messages are in, then a little longer for any extra one."""
        deadline = time.monotonic() + timeout_s
        while self.count() < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle_s)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        if not any(code.is_failure for code in reason_codes):
            self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))
