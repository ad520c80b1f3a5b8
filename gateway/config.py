"""Gateway configuration: TOML → validated models → compiled read plans, before the first poll.

    [gateway]
    id = "gw-01"
    site = "licheng-textile-01"
    uplink = "5g"

    [mqtt]
    url = "mqtt://127.0.0.1:1883"

    [[devices]]
    name = "meter-1"
    profile = "zayton-3ph-meter"     # a library id or a path relative to this file
    host = "192.168.1.20"
    unit_id = 1
    interval_s = 5

Sections ``[outbox]`` and per-device transports, quirks and counter settings are described in
docs/gateway.md. ``zayton check-config`` runs exactly this path, so a file it accepts is a file
the gateway runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.sparkplug import check_id
from profiles.files import ConfigError, load_model
from profiles.model import Hole, Profile, Quirks, load_profile
from profiles.plan import MAX_REGISTERS, PlanError, ReadRequest, plan_for
from wire.broker import BrokerSettings
from wire.catalogue import Kind
from wire.counters import CounterSpec
from wire.payload import MAX_READINGS, DeviceName, GatewayId, Uplink
from wire.topics import DEFAULT_ROOT, check_root


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Model):
    id: GatewayId
    site: GatewayId
    firm: str | None = None
    uplink: Uplink = Uplink.WIRED
    state_dir: Path = Path("state")
    """Where the gateway keeps its outbox and counter baselines; relative to the config file."""
    status_interval_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """How often device health is republished on the status topic (and at once on a change)."""
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Serve Prometheus metrics on this port (0: any free port; unset: no metrics endpoint)."""
    metrics_host: str = "127.0.0.1"


class MqttSection(_Model):
    url: str = "mqtt://127.0.0.1:1883"
    topic_root: str = DEFAULT_ROOT
    client_id: str | None = None
    batch_max_readings: Annotated[int, Field(ge=1, le=MAX_READINGS)] = 1000
    batch_max_age_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    max_in_flight: Annotated[int, Field(ge=1, le=1000)] = 50

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        BrokerSettings.from_url(value)
        return value

    @field_validator("topic_root")
    @classmethod
    def _root(cls, value: str) -> str:
        return check_root(value)

    @property
    def broker(self) -> BrokerSettings:
        return BrokerSettings.from_url(self.url)


class OutboxSection(_Model):
    """The on-disk outbox: every poll is stored before it is published, and kept until the
    broker acknowledges the batch that carries it."""

    max_mb: Annotated[float, Field(gt=0)] = 256.0
    when_full: Literal["drop-oldest", "block"] = "drop-oldest"
    """``drop-oldest``: delete the oldest unacknowledged batches to make room. ``block``: stop
    polling until there is room. Either way the gateway raises an alarm and counts the loss."""
    sync: Literal["normal", "full"] = "normal"
    """SQLite synchronous mode. ``normal`` survives a crash of the gateway process; ``full`` also
    a power cut, at the cost of an fsync per commit."""
    commit_interval_s: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Polls are committed together this often; a crash loses at most this last interval.
    0 commits every poll at once (more CPU on a busy gateway)."""


class SparkplugSection(_Model):
    """Also publish Sparkplug B 3.0, for host applications (SCADA) that speak it. The gateway's
    own telemetry keeps flowing beside it: that stream is the durable one the platform ingests,
    Sparkplug carries live values (QoS 0, as the specification asks)."""

    group_id: str
    edge_node_id: str | None = None
    """Defaults to the gateway id."""
    url: str | None = None
    """Broker of the Sparkplug host; defaults to ``mqtt.url``."""
    client_id: str | None = None

    @field_validator("group_id", "edge_node_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else check_id("Sparkplug id", value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            BrokerSettings.from_url(value)
        return value


class CounterSettings(_Model):
    rollover: Annotated[float, Field(gt=0)] | None = None
    max_per_hour: Annotated[float, Field(gt=0)] | None = None


Transport = Literal["tcp", "rtu", "rtu-tcp"]


class DeviceSection(_Model):
    name: DeviceName
    profile: str
    transport: Transport = "tcp"
    """``tcp``: Modbus TCP. ``rtu``: RTU on a serial line (``serial_port``). ``rtu-tcp``: RTU
    frames through a TCP socket, as plain serial-to-Ethernet converters pass them."""
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    serial_port: str | None = None
    baudrate: Annotated[int, Field(ge=300, le=921_600)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: Annotated[int, Field(ge=1, le=255)] = 1
    interval_s: Annotated[float, Field(ge=0.1, le=86_400)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    backoff_max_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    """A failing device is retried at its interval, then ever less often, at most this far apart."""
    # Quirks: each overrides the profile's (see profiles.model.Quirks).
    max_registers: Annotated[int, Field(ge=1, le=MAX_REGISTERS)] | None = None
    max_gap: Annotated[int, Field(ge=0, le=MAX_REGISTERS)] | None = None
    holes: tuple[Hole, ...] | None = None
    one_request_per_point: bool | None = None
    connect_pause_s: Annotated[float, Field(ge=0, le=30)] | None = None
    request_pause_s: Annotated[float, Field(ge=0, le=30)] | None = None
    close_after_poll: bool | None = None
    counters: dict[str, CounterSettings] = {}
    """Per counter point: ``rollover`` and ``max_per_hour`` overriding the profile's."""

    @model_validator(mode="after")
    def _endpoint(self) -> Self:
        if self.transport == "rtu":
            if self.serial_port is None:
                raise ValueError("transport 'rtu' needs serial_port (e.g. /dev/ttyUSB0)")
        elif self.host is None:
            raise ValueError(f"transport {self.transport!r} needs host")
        return self

    @property
    def quirks(self) -> Quirks:
        return Quirks.model_validate(
            self.model_dump(include=set(Quirks.model_fields), exclude_none=True)
        )

    @property
    def bus(self) -> str:
        """What devices share one connection and one lock: a serial line or a TCP endpoint."""
        if self.transport == "rtu":
            return f"serial:{self.serial_port}"
        return f"{self.transport}:{self.host}:{self.port}"

    @property
    def line(self) -> tuple[int, str, int, int]:
        return (self.baudrate, self.parity, self.stopbits, self.bytesize)


class GatewayFile(_Model):
    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    outbox: OutboxSection = OutboxSection()
    sparkplug: SparkplugSection | None = None
    devices: Annotated[list[DeviceSection], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: set[str] = set()
        lines: dict[str, DeviceSection] = {}
        for index, device in enumerate(self.devices):
            if device.name in seen:
                raise ValueError(f"device name {device.name!r} is used twice")
            seen.add(device.name)
            first = lines.setdefault(device.bus, device)
            if device.transport == "rtu" and device.line != first.line:
                raise ValueError(
                    f"devices.{index}: {device.serial_port} is set to "
                    f"{'/'.join(map(str, device.line))} here but "
                    f"{'/'.join(map(str, first.line))} for {first.name!r}: one serial line "
                    "has one speed and framing"
                )
        return self


@dataclass(frozen=True, slots=True)
class Device:
    """A device ready to poll: its settings, profile, quirks, read plan and counter specs."""

    config: DeviceSection
    profile: Profile
    quirks: Quirks
    requests: tuple[ReadRequest, ...]
    counters: dict[str, CounterSpec]

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    path: Path
    gateway: GatewaySection
    mqtt: MqttSection
    outbox: OutboxSection
    devices: tuple[Device, ...]
    sparkplug: SparkplugSection | None = None

    @property
    def state_dir(self) -> Path:
        return self.path.parent / self.gateway.state_dir

    def device(self, name: str) -> Device:
        for device in self.devices:
            if device.name == name:
                return device
        known = ", ".join(d.name for d in self.devices)
        raise ConfigError(f"{self.path}: no device {name!r} (have: {known})")


def counter_specs(profile: Profile, settings: dict[str, CounterSettings]) -> dict[str, CounterSpec]:
    """The counter points of a profile with their modulus and plausible rate."""
    specs = {}
    for point in profile.points:
        if point.kind_or_catalogue is not Kind.COUNTER:
            continue
        override = settings.get(point.name, CounterSettings())
        specs[point.name] = CounterSpec(
            modulus=override.rollover or point.modulus(),
            max_per_hour=override.max_per_hour or point.max_per_hour,
            tolerance=abs(point.scale),
        )
    return specs


def load_config(path: Path) -> GatewayConfig:
    """Validate and compile a gateway configuration; every problem names the file and key."""
    raw = load_model(path, GatewayFile)
    devices = []
    for index, section in enumerate(raw.devices):
        where = f"{path}: devices.{index}"
        try:
            profile = load_profile(section.profile, path.parent)
        except ConfigError as err:
            raise ConfigError(f"{where}.profile: {err}") from None
        quirks = section.quirks.over(profile.quirks)
        try:
            requests = plan_for(profile, section.quirks)
        except PlanError as err:
            raise ConfigError(f"{where}: {err}") from None
        specs = counter_specs(profile, section.counters)
        for name in section.counters:
            if name not in specs:
                raise ConfigError(
                    f"{where}.counters.{name}: profile {profile.id} has no counter {name!r} "
                    f"(counters: {', '.join(specs) or 'none'})"
                )
        if sum(len(r.slots) for r in requests) > MAX_READINGS:
            raise ConfigError(f"{where}: more than {MAX_READINGS} points in one device")
        devices.append(
            Device(
                config=section,
                profile=profile,
                quirks=quirks,
                requests=tuple(requests),
                counters=specs,
            )
        )
    return GatewayConfig(
        path=path,
        gateway=raw.gateway,
        mqtt=raw.mqtt,
        outbox=raw.outbox,
        devices=tuple(devices),
        sparkplug=raw.sparkplug,
    )
