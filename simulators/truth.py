"""Ground truth: what really flowed, written to files, so tests compare Zayton with the truth.

Three files in the output directory:

``park.json``
    the registry: park, firms (sector, land, headcount, onboarding, digital workshops), gateways
    (uplink) and devices (type, profile, what they measure, metering level, gateway, unit id).
``energy.csv``
    for every device counter and every interval: the true quantity that flowed (kWh, m³, t,
    units produced), unaffected by any fault the device shows. Local (UTC+8) aligned intervals.
``business.csv``
    per firm and local month: production and the output value, value added and tax it earns,
    with land area and headcount; the days of the month the run covered.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from simulators.park import Park
from simulators.scenario import DEFAULT_PROFILES
from simulators.shifts import DAY_S, LOCAL_OFFSET_S

ENERGY_FIELDS = ("interval_start", "interval_end", "firm", "device", "point", "unit", "quantity")
BUSINESS_FIELDS = (
    "month",
    "firm",
    "sector",
    "days_covered",
    "production_units",
    "unit",
    "output_value_10k_yuan",
    "value_added_10k_yuan",
    "tax_10k_yuan",
    "land_mu",
    "headcount",
)


class _Writer(Protocol):
    def writerow(self, row: Iterable[object], /) -> object: ...


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _month(t: float) -> str:
    return datetime.fromtimestamp(t + LOCAL_OFFSET_S, UTC).strftime("%Y-%m")


@dataclass(slots=True)
class _Month:
    month: str
    start: float
    produced: dict[str, float]


def registry(park: Park, ports: dict[str, int] | None = None) -> dict[str, object]:
    """The park as a JSON-ready registry (``ports``: Modbus TCP port of each gateway)."""
    scenario = park.scenario
    firms = []
    for spec in scenario.firms:
        units = {
            sim.name: unit
            for gateway in spec.gateways
            for unit, sim in park.gateways[gateway.id].devices.items()
        }
        devices = [
            {
                "name": device.name,
                "type": device.type.value,
                "profile": device.profile or DEFAULT_PROFILES[device.type],
                "measures": device.measures if device.line is None else f"line:{device.line}",
                "level": device.default_level(),
                "gateway": spec.gateway_of(device),
                "unit_id": units[device.name],
                "serial": park.devices[f"{spec.id}/{device.name}"].serial,
            }
            for device in spec.devices
        ]
        firm = spec.model_dump(mode="json", exclude={"devices", "gateways", "lines"})
        firm["gateways"] = [
            {**g.model_dump(mode="json"), "port": (ports or {}).get(g.id)} for g in spec.gateways
        ]
        firm["lines"] = [line.model_dump(mode="json") for line in spec.lines]
        firm["devices"] = devices
        firms.append(firm)
    return {"park": scenario.park.model_dump(mode="json"), "firms": firms}


class Truth:
    """Watches a park and writes its ground truth; use as a context manager."""

    def __init__(self, park: Park, directory: Path, *, interval_s: float = 900.0) -> None:
        if interval_s <= 0 or interval_s % park.step_s:
            raise ValueError(
                f"the truth interval {interval_s} s must be a multiple of the step {park.step_s} s"
            )
        if DAY_S % interval_s and interval_s % DAY_S:
            raise ValueError("the truth interval must divide a day (900, 3600...) or be days")
        self.park = park
        self.directory = directory
        self.interval_s = interval_s
        self._files: list[IO[str]] = []
        self._energy: _Writer | None = None
        self._business: _Writer | None = None
        self._last = park.now
        self._snapshot = self._counters()
        self._months: _Month = _Month(_month(park.now), park.now, self._produced())

    def __enter__(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "park.json").write_text(
            json.dumps(registry(self.park), ensure_ascii=False, indent=1) + "\n"
        )
        energy = (self.directory / "energy.csv").open("w", newline="")
        business = (self.directory / "business.csv").open("w", newline="")
        self._files = [energy, business]
        self._energy = csv.writer(energy)
        self._energy.writerow(ENERGY_FIELDS)
        self._business = csv.writer(business)
        self._business.writerow(BUSINESS_FIELDS)
        self.park.observers.append(self._on_cell)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.park.observers.remove(self._on_cell)
        self._close_month(self.park.now)
        for handle in self._files:
            handle.close()

    def flush(self) -> None:
        for handle in self._files:
            handle.flush()

    def _counters(self) -> dict[tuple[str, str], float]:
        return {
            (key, name): counter.true
            for key, device in self.park.devices.items()
            for name, counter in device.counters.items()
        }

    def _produced(self) -> dict[str, float]:
        return {
            firm_id: sum(line.produced for line in firm.countable)
            for firm_id, firm in self.park.firms.items()
        }

    def _on_cell(self, t: float) -> None:
        if (t + LOCAL_OFFSET_S) % self.interval_s > 1e-6:
            return
        assert self._energy is not None  # noqa: S101 - set in __enter__
        snapshot = self._counters()
        start, end = _iso(self._last), _iso(t)
        for (key, name), value in snapshot.items():
            firm, device = key.split("/", 1)
            unit = self.park.devices[key].counters[name].binding.point.unit_or_catalogue
            delta = value - self._snapshot[(key, name)]
            self._energy.writerow((start, end, firm, device, name, unit, f"{delta:.6f}"))
        self._snapshot = snapshot
        self._last = t
        if _month(t) != self._months.month:
            self._close_month(t)

    def _close_month(self, t: float) -> None:
        assert self._business is not None  # noqa: S101 - set in __enter__
        month, produced = self._months, self._produced()
        days = (t - month.start) / DAY_S
        for spec in self.park.scenario.firms:
            units = produced[spec.id] - month.produced[spec.id]
            output = units * spec.product.price_yuan / 10_000
            self._business.writerow(
                (
                    month.month,
                    spec.id,
                    spec.sector.value,
                    f"{days:.4f}",
                    f"{units:.1f}",
                    spec.product.unit,
                    f"{output:.4f}",
                    f"{output * spec.value_added_ratio:.4f}",
                    f"{output * spec.tax_ratio:.4f}",
                    spec.land_mu,
                    spec.headcount,
                )
            )
        self._months = _Month(_month(t), t, produced)
