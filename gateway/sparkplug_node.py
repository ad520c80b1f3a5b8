"""The gateway as a Sparkplug B edge node, beside its own telemetry stream.

One MQTT connection of its own (Sparkplug's will is the NDEATH, Zayton's is the offline status,
and a connection has one will). On every connect: NBIRTH (bdSeq, rebirth control, site, firm,
uplink, software), then a DBIRTH per device that has answered, then DDATA for every poll. A device
that goes offline gets a DDEATH and is born again with its next answer. ``Node Control/Rebirth``
from a host repeats the births. bdSeq survives restarts in the outbox's settings.

What Sparkplug gets is live: polls made while its connection is down are not replayed to it
(Zayton's own stream, from the outbox, is the one that loses nothing). Writes (DCMD) are refused:
the gateway only reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import version

from gateway.config import GatewayConfig
from gateway.outbox import Outbox
from gateway.poller import DeviceReader, Poll
from gateway.sparkplug import (
    NAMESPACE,
    REBIRTH_METRIC,
    SEQ_MODULUS,
    DataType,
    DecodeError,
    EdgeNode,
    Message,
    MessageType,
    Metric,
    decode_payload,
    parse_topic,
    topic,
)
from wire.broker import BrokerSettings
from wire.mqtt import LastWill, NodeSession

log = logging.getLogger(__name__)

BD_SEQ_SETTING = "sparkplug_next_bd_seq"


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


class SparkplugNode:
    """Turns polls and device health into Sparkplug messages on a :class:`NodeSession`."""

    def __init__(
        self, config: GatewayConfig, readers: Sequence[DeviceReader], outbox: Outbox
    ) -> None:
        settings = config.sparkplug
        if settings is None:
            raise ValueError(f"{config.path}: no [sparkplug] section")
        gateway = config.gateway
        self._outbox = outbox
        self._next_bd_seq = (outbox.setting(BD_SEQ_SETTING) or 0) % SEQ_MODULUS
        self._will_bd_seq = self._next_bd_seq
        self.edge = EdgeNode(settings.group_id, settings.edge_node_id or gateway.id)
        self._readers = {reader.device.name: reader for reader in readers}
        self._node_metrics = tuple(
            Metric(name=f"Properties/{name}", datatype=DataType.STRING, value=value)
            for name, value in (
                ("Site", gateway.site),
                ("Firm", gateway.firm or ""),
                ("Uplink", gateway.uplink.value),
                ("Software", f"zayton-gateway {version('zayton')}"),
            )
        )
        self._last: dict[str, dict[str, tuple[int, float | None]]] = {}
        """Per device, the last value and its time (ms) of every point: what a DBIRTH shows."""
        self._born: set[str] = set()
        group, node = self.edge.group_id, self.edge.edge_node_id
        self.session = NodeSession(
            config.mqtt.broker if settings.url is None else BrokerSettings.from_url(settings.url),
            client_id=settings.client_id or f"zayton-sp-{group}-{node}",
            will=self._will,
            on_connect=self._connected,
            on_lost=self._lost,
            commands=[
                topic(group, MessageType.NCMD, node),
                f"{NAMESPACE}/{group}/{MessageType.DCMD.value}/{node}/+",
            ],
            on_command=self._command,
        )

    @property
    def live(self) -> bool:
        """Connected, and so born: data may be sent."""
        return self.session.connected.is_set()

    # The session's callbacks.

    def _will(self) -> LastWill:
        """The NDEATH for the next CONNECT (paho's network thread): a fresh bdSeq each time."""
        bd_seq = self._next_bd_seq
        self._next_bd_seq = (bd_seq + 1) % SEQ_MODULUS
        self._will_bd_seq = bd_seq
        death = self.edge.death_certificate(bd_seq)
        return LastWill(death.topic, death.payload, qos=1, retain=False)

    def _connected(self) -> None:
        self.edge.start_session(self._will_bd_seq)
        self._outbox.keep_setting(BD_SEQ_SETTING, self._next_bd_seq)
        self._births()

    def _lost(self) -> None:
        self._born.clear()

    def _command(self, text: str, payload: bytes) -> None:
        try:
            where = parse_topic(text)
            metrics = decode_payload(payload).metrics
        except (ValueError, DecodeError) as err:
            log.warning("ignoring a Sparkplug command on %s: %s", text, err)
            return
        if where.message_type is MessageType.DCMD:
            log.warning("refusing a write to %s: the gateway only reads", where.device_id)
            return
        if any(m.name == REBIRTH_METRIC and m.value is True for m in metrics):
            log.info("a Sparkplug host asked for a rebirth")
            self._births()

    # What the gateway feeds it.

    def deliver(self, poll: Poll) -> None:
        """Remember the poll's values; publish them as DDATA (or a DBIRTH, first time)."""
        last = self._last.setdefault(poll.device, {})
        values: dict[str, float | None] = {}
        stamps: dict[str, int] = {}
        for reading in json.loads(f"[{poll.body}]"):
            point = reading["point"]
            values[point], stamps[point] = reading["value"], _ms(reading["ts"])
            last[point] = (stamps[point], values[point])
        if not self.live or not values:
            return
        if poll.device not in self._born:
            self._device_birth(poll.device)
        else:
            self._publish(self.edge.device_data(poll.device, values, stamps))

    def check_health(self) -> None:
        """DDEATH for every born device that went offline."""
        if not self.live:
            return
        for name in sorted(self._born):
            if self._readers[name].health.state == "offline":
                self._publish(self.edge.device_death(name))
                self._born.discard(name)

    # Births.

    def _births(self) -> None:
        self._born.clear()
        self._publish(self.edge.node_birth(self._node_metrics))
        for name, reader in self._readers.items():
            if name in self._last and reader.health.state != "offline":
                self._device_birth(name)

    def _device_birth(self, name: str) -> None:
        reader = self._readers[name]
        last = self._last.get(name, {})
        metrics = []
        for request in reader.device.requests:
            for slot in request.slots:
                at, value = last.get(slot.point.name, (None, None))
                metrics.append(
                    Metric(
                        name=slot.point.name,
                        timestamp=at,
                        datatype=DataType.DOUBLE,
                        value=value,
                        is_null=value is None,
                    )
                )
        self._publish(self.edge.device_birth(name, metrics))
        self._born.add(name)

    def _publish(self, message: Message) -> None:
        self.session.publish(message.topic, message.payload)
