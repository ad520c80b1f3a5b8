"""The monitoring job's configuration: TOML → validated models → settings, before the first pass.

    [monitoring]
    interval_s = 60

    [[endpoints]]
    name = "province"
    url = "https://nhjc.example.gov.cn/upload"
    ca_file = "province-ca.pem"          # relative to this file; unset: the system's CAs
    client_cert = "unit.pem"             # where the platform asks for a client certificate
    client_key = "unit.key"

    [[endpoints]]
    name = "city"
    url = "https://energy.example.cn/api/monitoring"

Keys are checked: a misspelt one is an error naming the file and the key.
"""

from __future__ import annotations

import logging
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.monitoring.errors import ConfigError
from api.monitoring.outbox import KEEP_DAYS, MIN_KEEP_DAYS
from api.monitoring.service import MonitorSettings
from api.monitoring.upload import Backoff, Endpoint

log = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobSection(_Model):
    interval_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    settle_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    catch_up_days: Annotated[float, Field(gt=0, le=186)] = 7.0
    revisit_days: Annotated[float, Field(ge=0, le=31)] = 1.0
    keep_days: Annotated[int, Field(ge=MIN_KEEP_DAYS)] = KEEP_DAYS


class BackoffSection(_Model):
    base_s: Annotated[float, Field(gt=0)] = 30.0
    cap_s: Annotated[float, Field(gt=0)] = 3600.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.5


class EndpointSection(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    url: Annotated[str, Field(pattern=r"^https://")]
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    headers: dict[str, str] = Field(default_factory=dict)


class MonitoringFile(_Model):
    monitoring: JobSection = JobSection()
    backoff: BackoffSection = BackoffSection()
    endpoints: Annotated[list[EndpointSection], Field(min_length=1)]


def _relative(base: Path, path: Path | None) -> Path | None:
    return None if path is None else base / path


def load_settings(path: Path) -> MonitorSettings:
    """The settings of a configuration file; every endpoint's TLS files are opened, so a file
    this accepts is one the job can run with."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = MonitoringFile.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from None
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    names = [e.name for e in parsed.endpoints]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: endpoint names must differ: {names}")
    if len(names) < 2:
        log.warning("%s: one endpoint; the specification asks for two data centres", path)
    endpoints = tuple(
        Endpoint(
            name=e.name,
            url=e.url,
            ca_file=_relative(path.parent, e.ca_file),
            client_cert=_relative(path.parent, e.client_cert),
            client_key=_relative(path.parent, e.client_key),
            timeout_s=e.timeout_s,
            headers=dict(e.headers),
        )
        for e in parsed.endpoints
    )
    for endpoint in endpoints:
        endpoint.ssl_context()
    job = parsed.monitoring
    return MonitorSettings(
        endpoints=endpoints,
        backoff=Backoff(parsed.backoff.base_s, parsed.backoff.cap_s, parsed.backoff.jitter),
        interval_s=job.interval_s,
        settle=timedelta(seconds=job.settle_s),
        catch_up=timedelta(days=job.catch_up_days),
        revisit=timedelta(days=job.revisit_days),
        keep_days=job.keep_days,
    )
