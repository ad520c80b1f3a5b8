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

``zayton check-config`` runs exactly this path, so a file it accepts is a file the gateway runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from profiles.files import ConfigError, load_model
from profiles.model import Profile, load_profile
from profiles.plan import MAX_REGISTERS, PlanError, ReadRequest, plan_reads
from wire.broker import BrokerSettings
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
    """Where the gateway keeps its sequence numbers; relative to the config file."""


class MqttSection(_Model):
    url: str = "mqtt://127.0.0.1:1883"
    topic_root: str = DEFAULT_ROOT
    client_id: str | None = None
    batch_max_readings: Annotated[int, Field(ge=1, le=MAX_READINGS)] = 1000
    batch_max_age_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    buffer_max_readings: Annotated[int, Field(ge=100)] = 200_000
    """Readings held in memory while the broker is unreachable; beyond it the oldest are dropped
    and counted."""
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


class DeviceSection(_Model):
    name: DeviceName
    profile: str
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    interval_s: Annotated[float, Field(ge=0.1, le=86_400)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    max_registers: Annotated[int, Field(ge=1, le=MAX_REGISTERS)] = MAX_REGISTERS
    max_gap: Annotated[int, Field(ge=0, le=MAX_REGISTERS)] = 8


class GatewayFile(_Model):
    gateway: GatewaySection
    mqtt: MqttSection = MqttSection()
    devices: Annotated[list[DeviceSection], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"device name {device.name!r} is used twice")
            seen.add(device.name)
        return self


@dataclass(frozen=True, slots=True)
class Device:
    """A device ready to poll: its settings, its profile and its compiled read plan."""

    config: DeviceSection
    profile: Profile
    requests: tuple[ReadRequest, ...]

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    path: Path
    gateway: GatewaySection
    mqtt: MqttSection
    devices: tuple[Device, ...]

    @property
    def state_dir(self) -> Path:
        return self.path.parent / self.gateway.state_dir


def load_config(path: Path) -> GatewayConfig:
    """Validate and compile a gateway configuration; every problem names the file and key."""
    raw = load_model(path, GatewayFile)
    devices = []
    for index, section in enumerate(raw.devices):
        where = f"{path}: devices.{index}.profile"
        try:
            profile = load_profile(section.profile, path.parent)
            requests = plan_reads(
                profile, max_registers=section.max_registers, max_gap=section.max_gap
            )
        except (ConfigError, PlanError) as err:
            raise ConfigError(f"{where}: {err}") from None
        devices.append(Device(config=section, profile=profile, requests=tuple(requests)))
    return GatewayConfig(path=path, gateway=raw.gateway, mqtt=raw.mqtt, devices=tuple(devices))
