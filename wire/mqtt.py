"""The project's one MQTT adapter, and its only module that imports paho-mqtt.

Both sides of the wire use it: gateways (and the load generator) publish at QoS 1 with
:class:`Publisher`, the ingester consumes with :class:`Subscriber`. paho runs its network loop in a
thread; everything it reports crosses into asyncio through ``call_soon_threadsafe``. Sessions are
persistent (clean_session=False) unless asked otherwise, so QoS 1 messages in flight when the
connection drops are sent again after the reconnect.

paho's message ids are 16-bit: with more than 65,535 unacknowledged QoS 1 messages ``publish()``
refuses with ``MQTT_ERR_QUEUE_SIZE``. The publisher therefore bounds the messages in flight with a
semaphore released on acknowledgement, and checks the result of every ``publish()``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from wire.broker import BrokerSettings

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 65_000
"""Upper bound of ``max_in_flight``: below paho's 65,535 message ids, with room for the status."""

RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30


class PublishError(RuntimeError):
    """The client refused a message (its queue is full); the message was not sent."""


@dataclass(frozen=True, slots=True)
class LastWill:
    """What the broker publishes for a client that vanishes without disconnecting."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def make_client(
    settings: BrokerSettings,
    *,
    client_id: str,
    clean_session: bool = False,
    manual_ack: bool = False,
    will: LastWill | None = None,
) -> paho.Client:
    """A paho client (callback API 2, MQTT 3.1.1) configured from ``settings``, not connected.

    Credentials and TLS come from the settings. With ``manual_ack`` received QoS 1 messages are
    acknowledged only by ``client.ack()``.
    """
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=MQTTProtocolVersion.MQTTv311,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY_S, max_delay=RECONNECT_MAX_DELAY_S)
    return client


def reconnect_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect ``attempt`` (1, 2, …): doubling from 1 s, capped at 30 s,
    each wait drawn from its upper half so that a park's gateways do not return in step after
    a broker restart."""
    ceiling = min(RECONNECT_MAX_DELAY_S, RECONNECT_MIN_DELAY_S << min(max(attempt, 1) - 1, 16))
    spread: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + spread


class _Session:
    """What publisher and subscriber share: a paho client whose network thread runs beside the
    asyncio loop that entered it, and hands events over to that loop."""

    def __init__(self, settings: BrokerSettings, client: paho.Client) -> None:
        self._settings = settings
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attempts = 0
        self.reconnects = 0
        """Connections lost (or attempts failed) since the session began."""
        self._closing = False
        """Set before a clean disconnect, which is then not reported or retried."""
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda client, userdata: self._lost()

    def _lost(self) -> None:
        """The connection is gone or could not be made: set the wait before paho's next try.

        paho doubles its own delay without jitter; it is set here to one jittered delay per
        attempt instead (min = max, so paho waits exactly that)."""
        self._attempts += 1
        self.reconnects += 1
        delay = reconnect_delay(self._attempts)
        # paho annotates the delays as int but sleeps for any number of seconds.
        self._client.reconnect_delay_set(cast(int, delay), cast(int, delay))
        self._before_connect(self._client)

    def _before_connect(self, client: paho.Client) -> None:
        """About to (re)connect: the place to change what the next CONNECT carries."""

    async def __aenter__(self) -> Self:
        self._start()
        return self

    def _start(self) -> None:
        """Connect in the background (paho retries until the broker answers)."""
        self._loop = asyncio.get_running_loop()
        self._before_connect(self._client)
        self._client.connect_async(
            self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s
        )
        self._client.loop_start()

    async def _stop(self) -> None:
        """Disconnect cleanly (no will, no retry) and stop paho's network thread."""
        self._closing = True
        self._client.disconnect()
        self._unblock()
        await asyncio.to_thread(self._client.loop_stop)

    def _unblock(self) -> None:
        """Let paho's network thread go if it waits on this side (before it is stopped)."""

    def _call(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the loop; safe from paho's network thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    def _up(self, client: paho.Client) -> None:
        """The broker accepted the connection (paho's network thread)."""

    def _down(self) -> None:
        """The connection is gone, cleanly or not (paho's network thread)."""

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
        self._attempts = 0
        self._up(client)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self._down()
        if reason_code.value != 0 and not self._closing:
            self._lost()
            log.warning("lost the broker (%s); reconnecting", reason_code)


class Publisher(_Session):
    """QoS 1 publishing that completes on PUBACK, at most ``max_in_flight`` messages unacknowledged.

    With ``status_topic``, ``online`` and ``offline`` (all three or none) the publisher announces
    itself: a retained ``online`` on every connect, a retained ``offline`` on a clean exit, and the
    same ``offline`` as its last will.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        client_id: str,
        status_topic: str | None = None,
        online: bytes | None = None,
        offline: bytes | None = None,
        max_in_flight: int = 50,
    ) -> None:
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}, not {max_in_flight}")
        self._status: tuple[str, bytes, bytes] | None = None
        if status_topic is not None and online is not None and offline is not None:
            self._status = (status_topic, online, offline)
        elif (status_topic, online, offline) != (None, None, None):
            raise ValueError("give status_topic, online and offline together, or none of them")
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._unslotted: set[int] = set()
        """Pending messages sent without taking a slot (the offline status on exit)."""
        self._slots = asyncio.Semaphore(max_in_flight)
        self._idle = asyncio.Event()
        self._idle.set()
        self.connected = asyncio.Event()
        will = None if self._status is None else LastWill(self._status[0], self._status[2])
        client = make_client(settings, client_id=client_id, will=will)
        client.max_inflight_messages_set(max_in_flight)
        client.on_publish = self._on_publish
        super().__init__(settings, client)

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return len(self._pending)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None and self.connected.is_set():
            topic, _, offline = self._status
            try:
                async with asyncio.timeout(2):
                    # No slot: the status must not wait behind the messages in flight.
                    mid = self._submit(topic, offline, retain=True)
                    self._unslotted.add(mid)
                    await self._track(mid)
            except (TimeoutError, PublishError):
                log.warning("could not publish the offline status before disconnecting")
        await self._stop()
        # Nothing acknowledges what is still pending now: release whoever waits for it.
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._unslotted.clear()
        self._idle.set()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and return when the broker has acknowledged the message."""
        await (await self.send(topic, payload, retain=retain))

    async def send(
        self, topic: str, payload: bytes, *, retain: bool = False
    ) -> asyncio.Future[None]:
        """Wait for a free in-flight slot, publish at QoS 1 and return the acknowledgement.

        The returned future completes when the broker has acknowledged the message; awaiting it
        is up to the caller, so a producer can keep up to ``max_in_flight`` messages in flight.
        Raises :class:`PublishError` when the client refuses the message.
        """
        self._check_open()
        await self._slots.acquire()
        try:
            self._check_open()
            mid = self._submit(topic, payload, retain=retain)
        except BaseException:
            self._slots.release()
            raise
        return self._track(mid)

    async def update_status(self, online: bytes) -> None:
        """Replace the retained ``online`` status (sent now and on every reconnect)."""
        if self._status is None:
            raise RuntimeError("this publisher was made without a status topic")
        topic, _, offline = self._status
        self._status = (topic, online, offline)
        if self.connected.is_set():
            await self.send(topic, online, retain=True)

    async def drain(self) -> None:
        """Wait until every message sent so far has been acknowledged."""
        await self._idle.wait()

    def _check_open(self) -> None:
        if self._loop is None:
            raise RuntimeError("use the publisher inside 'async with'")
        if self._closing:
            raise RuntimeError("the publisher is closed")

    def _submit(self, topic: str, payload: bytes, *, retain: bool) -> int:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN is fine: paho keeps the message and sends it once reconnected.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        return info.mid

    def _track(self, mid: int) -> asyncio.Future[None]:
        # The acknowledgement reaches this loop through call_soon_threadsafe, so it cannot be
        # handled before the future is registered here, with no await in between.
        assert self._loop is not None  # noqa: S101
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[mid] = future
        self._idle.clear()
        return future

    def _acknowledged(self, mid: int) -> None:
        future = self._pending.pop(mid, None)
        if future is None:  # the status sent on connect, or a message of a closed publisher
            return
        if not self._pending:
            self._idle.set()
        if not future.done():  # done: the caller gave up waiting (cancelled)
            future.set_result(None)
        if mid in self._unslotted:
            self._unslotted.discard(mid)
        else:
            self._slots.release()

    # Callbacks below run on paho's network thread.

    def _up(self, client: paho.Client) -> None:
        log.info("connected to %s", self._settings.url())
        if self._status is not None:
            topic, online, _ = self._status
            client.publish(topic, online, qos=1, retain=True)
        self._call(self.connected.set)

    def _down(self) -> None:
        self._call(self.connected.clear)

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


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Subscriber(_Session):
    """QoS 1 subscriptions whose messages are acknowledged only when the caller says so.

    Messages are acknowledged with PUBACK by :meth:`ack`, once their content is safe (paho's
    ``manual_ack``), and the session is persistent, so a crash loses nothing: the broker delivers
    again what was not acknowledged. At most ``max_pending`` messages wait unacknowledged; beyond
    that paho's network thread waits, which holds the broker back through TCP.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        client_id: str,
        filters: list[str],
        max_pending: int = 2000,
    ) -> None:
        self._filters = filters
        self._slots = threading.BoundedSemaphore(max_pending)
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self.subscribed = asyncio.Event()
        client = make_client(settings, client_id=client_id, manual_ack=True)
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        super().__init__(settings, client)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    def _unblock(self) -> None:
        # The network thread may wait for a slot: release enough for it to see the close.
        for _ in range(64):
            try:
                self._slots.release()
            except ValueError:
                break

    @property
    def waiting(self) -> int:
        """Messages received and not yet taken by :meth:`get`."""
        return self._queue.qsize()

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

    def _up(self, client: paho.Client) -> None:
        log.info("connected to %s, subscribing to %s", self._settings.url(), self._filters)
        client.subscribe([(f, 1) for f in self._filters])

    def _down(self) -> None:
        self._call(self.subscribed.clear)

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

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._slots.acquire()
        if self._closing:
            return
        message = Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
        self._call(lambda: self._queue.put_nowait(message))


class NodeSession(_Session):
    """The connection of a node that is born anew on every connect, as a Sparkplug B edge node.

    The session is clean, and the last will is asked of ``will()`` before every connection
    attempt (on paho's network thread), so each CONNECT can carry a will of its own (Sparkplug's
    NDEATH names the bdSeq of the session it ends). ``on_connect`` and ``on_lost`` run on the
    loop, in the order the connection came and went; messages on the ``commands`` filters reach
    ``on_command`` on the loop. :meth:`publish` sends at QoS 0, as Sparkplug asks of births and
    data: what is published while disconnected is dropped, never replayed. On a clean exit the
    current will is published (QoS 1, acknowledged) before disconnecting.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        client_id: str,
        will: Callable[[], LastWill],
        on_connect: Callable[[], None],
        on_lost: Callable[[], None],
        commands: Iterable[str] = (),
        on_command: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._will = will
        self._last_will: LastWill | None = None
        self._on_up = on_connect
        self._on_lost = on_lost
        self._commands = list(commands)
        self._on_command = on_command
        self.connected = asyncio.Event()
        client = make_client(settings, client_id=client_id, clean_session=True)
        client.on_message = self._on_message
        super().__init__(settings, client)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        will = self._last_will
        if will is not None and self.connected.is_set():
            info = self._client.publish(will.topic, will.payload, qos=will.qos)
            await asyncio.to_thread(info.wait_for_publish, 2.0)
            if not info.is_published():
                log.warning("could not publish the death certificate before disconnecting")
        await self._stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes) -> None:
        """Send at QoS 0 now; without a connection the message is dropped."""
        if self.connected.is_set():
            self._client.publish(topic, payload, qos=0)

    def _arrived(self) -> None:
        self.connected.set()
        self._on_up()

    def _departed(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self._on_lost()

    # Callbacks below run on paho's network thread (or before the first connect).

    def _before_connect(self, client: paho.Client) -> None:
        will = self._will()
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._last_will = will

    def _up(self, client: paho.Client) -> None:
        log.info("connected to %s as a Sparkplug edge node", self._settings.url())
        if self._commands:
            client.subscribe([(f, 1) for f in self._commands])
        self._call(self._arrived)

    def _down(self) -> None:
        self._call(self._departed)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        handler = self._on_command
        if handler is not None and not self._closing:
            topic, payload = msg.topic, bytes(msg.payload)
            self._call(lambda: handler(topic, payload))
