"""Energy accounting: what an entity consumed in a period, by carrier, in tonnes of standard coal.

Quantities come from the rollups' ``consumption`` (the sum of the counter deltas gateways count,
so wraps, resets and meter replacements are already dealt with), read from the coarsest rollup
whose buckets fit the period: a year of months, a month of days, an odd range of 15 minutes.

Which meters count (GB 17167 metering levels, ``api/registry.py``):

firm
    its site-boundary meters (level 1) only, so sub-meters are never counted twice. Electricity
    is imports less exports plus the firm's own PV generation; steam counts only when a boundary
    meter buys it (steam raised in the firm's own boiler is already counted as its gas).
workshop, line
    the meters that measure it, whatever their level; a workshop without a meter of its own for a
    carrier is the sum of its lines' meters.
device
    its own counters.
park, district
    the sum of their firms.

Each carrier is converted with the coefficient in force on each day of the period
(``api/coefficients.py``); a period that spans a new coefficient is split at its first day.
Electricity uses the basis asked for (当量值 by default) and every result states it. New water
(耗能工质) is converted and reported but left out of the total unless asked for: Zayton's default,
since purchased working media are not the unit's own energy use.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel

from api.coefficients import Basis, Coefficient, CoefficientError, Kind, Table

ZONE = ZoneInfo("Asia/Shanghai")
"""Days and months are counted in local time (statistics windows start at 00:00 local), the
database's ``zayton.local_zone()``."""

ELECTRICITY, EXPORT, PV, PRODUCT = "electricity", "electricity_export", "pv", "product"
CLEAN = frozenset({"natural_gas", PV})
"""Counted as clean energy in the clean-energy share (domain.md: natural gas + PV)."""
WORKING_MEDIA = frozenset({"water"})


class Resolution(StrEnum):
    QUARTER = "15m"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


ROLLUPS = {
    Resolution.QUARTER: "zayton.rollup_15m",
    Resolution.HOUR: "zayton.rollup_hour",
    Resolution.DAY: "zayton.rollup_day",
    Resolution.MONTH: "zayton.rollup_month",
}


class EnergyError(ValueError):
    """A period or entity that cannot be accounted for; the message says why."""


class NotFound(EnergyError):
    """No such entity among those the caller may see."""


def _aligned(t: datetime, resolution: Resolution) -> bool:
    local = t.astimezone(ZONE)
    if local.second or local.microsecond or local.minute % 15:
        return False
    if resolution is Resolution.QUARTER:
        return True
    if local.minute:
        return False
    if resolution is Resolution.HOUR:
        return True
    if local.hour:
        return False
    return resolution is Resolution.DAY or local.day == 1


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)``, both on 15-minute boundaries (local days and months for those)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise EnergyError("a period's start and end need a time zone")
        if self.end <= self.start:
            raise EnergyError(f"the period ends ({self.end}) before it starts ({self.start})")
        if not (
            _aligned(self.start, Resolution.QUARTER) and _aligned(self.end, Resolution.QUARTER)
        ):
            raise EnergyError("a period starts and ends on a 15-minute boundary")

    @classmethod
    def day(cls, day: date) -> Period:
        return cls.days(day, day + timedelta(days=1))

    @classmethod
    def days(cls, first: date, stop: date) -> Period:
        """Local days from ``first`` up to, not including, ``stop``."""
        return cls(_local_midnight(first), _local_midnight(stop))

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        following = date(year + month // 12, month % 12 + 1, 1)
        return cls.days(date(year, month, 1), following)

    @classmethod
    def year(cls, year: int) -> Period:
        return cls.days(date(year, 1, 1), date(year + 1, 1, 1))

    @property
    def resolution(self) -> Resolution:
        """The coarsest rollup whose buckets fit the period exactly."""
        for resolution in (Resolution.MONTH, Resolution.DAY, Resolution.HOUR):
            if _aligned(self.start, resolution) and _aligned(self.end, resolution):
                return resolution
        return Resolution.QUARTER

    @property
    def first_day(self) -> date:
        return self.start.astimezone(ZONE).date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).astimezone(ZONE).date()

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZONE)


# --- what is metered -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meter:
    device_id: int
    name: str
    firm_id: int
    workshop_id: int | None
    equipment_id: int | None
    level: int | None


@dataclass(frozen=True, slots=True)
class Node:
    """A workshop or a line."""

    id: int
    firm_id: int
    kind: Literal["workshop", "line"]
    name: str
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class Firm:
    id: int
    code: str
    park_id: int | None


@dataclass(slots=True)
class Hierarchy:
    firms: dict[int, Firm]
    nodes: dict[int, Node]
    meters: dict[int, Meter]
    parks: dict[int, str] = field(default_factory=dict)

    def firm(self, code: str) -> Firm:
        for firm in self.firms.values():
            if firm.code == code:
                return firm
        raise NotFound(f"no firm {code!r}")

    def node(self, firm: Firm, kind: str, name: str) -> Node:
        for node in self.nodes.values():
            if node.firm_id == firm.id and node.kind == kind and node.name == name:
                return node
        raise NotFound(f"firm {firm.code!r} has no {kind} {name!r}")


async def load_hierarchy(
    conn: psycopg.AsyncConnection[Any], firm_ids: Sequence[int] | None = None
) -> Hierarchy:
    """The firms (all, or ``firm_ids``), their workshops, lines and assigned meters."""
    scope = "" if firm_ids is None else " WHERE f.id = ANY (%(firms)s)"
    params = {"firms": list(firm_ids or [])}
    cursor = await conn.execute(
        f"SELECT f.id, f.code, f.park_id FROM zayton.firms f{scope}".encode(), params
    )
    firms = {int(r[0]): Firm(int(r[0]), str(r[1]), r[2]) for r in await cursor.fetchall()}
    ids = list(firms)
    cursor = await conn.execute(
        """SELECT id, firm_id, kind, name, parent_id FROM zayton.workshops
           WHERE firm_id = ANY (%s)""",
        (ids,),
    )
    nodes = {
        int(r[0]): Node(int(r[0]), int(r[1]), r[2], str(r[3]), r[4])
        for r in await cursor.fetchall()
    }
    cursor = await conn.execute(
        """SELECT id, name, firm_id, workshop_id, equipment_id, metering_level
           FROM zayton.devices WHERE firm_id = ANY (%s)""",
        (ids,),
    )
    meters = {
        int(r[0]): Meter(int(r[0]), str(r[1]), int(r[2]), r[3], r[4], r[5])
        for r in await cursor.fetchall()
    }
    cursor = await conn.execute(
        "SELECT id, code FROM zayton.parks WHERE id = ANY (%s)",
        ([f.park_id for f in firms.values() if f.park_id is not None],),
    )
    parks = {int(r[0]): str(r[1]) for r in await cursor.fetchall()}
    return Hierarchy(firms, nodes, meters, parks)


@dataclass(frozen=True, slots=True)
class Flow:
    """What one device's counters of one carrier counted in one segment of a period."""

    device_id: int
    carrier: str
    unit: str
    segment: int
    quantity: float


def segments(period: Period, table: Table) -> list[date]:
    """The days inside the period on which some coefficient changes: the period is split there
    so that each part is converted with the coefficients in force."""
    first, last = period.first_day, period.last_day
    days = {c.valid_from for c in table.coefficients if first < c.valid_from <= last}
    return sorted(d for d in days if _local_midnight(d) > period.start)


async def load_flows(
    conn: psycopg.AsyncConnection[Any],
    period: Period,
    device_ids: Sequence[int],
    splits: Sequence[date] = (),
) -> list[Flow]:
    """Counted consumption of the devices' counter points, per carrier and segment
    (segment ``i`` runs from ``splits[i-1]`` to ``splits[i]``), each segment read from the
    coarsest rollups that fit it (``zayton.rollup_between``)."""
    bounds = [period.start, *(_local_midnight(d) for d in splits), period.end]
    cursor = await conn.execute(
        """WITH counters AS (
                SELECT ARRAY(SELECT id FROM zayton.points
                             WHERE kind = 'counter' AND carrier IS NOT NULL
                               AND device_id = ANY (%(devices)s)) AS ids)
            SELECT p.device_id, p.carrier, coalesce(p.unit, ''), s.n - 1, sum(r.consumption)
            FROM counters c
            CROSS JOIN unnest(%(lows)s::timestamptz[], %(highs)s::timestamptz[])
                WITH ORDINALITY AS s (lo, hi, n)
            CROSS JOIN LATERAL zayton.rollup_between(s.lo, s.hi, c.ids) r
            JOIN zayton.points p ON p.id = r.point_id
            WHERE r.consumption IS NOT NULL
            GROUP BY 1, 2, 3, 4""",
        {"devices": list(device_ids), "lows": bounds[:-1], "highs": bounds[1:]},
    )
    return [
        Flow(int(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4]))
        for r in await cursor.fetchall()
    ]


# --- results -------------------------------------------------------------------------------------


class CoefficientUsed(BaseModel):
    carrier: str
    kind: Literal["conversion", "emission"]
    value: float
    unit: str
    valid_from: date
    source: str
    basis: str | None
    placeholder: bool


class CarrierUse(BaseModel):
    carrier: str
    unit: str
    quantity: float
    """Metered quantity in ``unit`` (electricity: imports less exports at the boundary)."""
    tce: float
    co2_t: float
    in_total: bool


class EnergyUse(BaseModel):
    """What an entity consumed in a period."""

    entity: str
    """``firm:<code>``, ``park:<code>``, ``workshop:<firm>/<name>``, ``line:<firm>/<id>``,
    ``device:<site>/<name>`` or ``district``."""
    start: datetime
    end: datetime
    basis: Basis
    carriers: list[CarrierUse]
    total_tce: float
    """综合能源消费量: the carriers ``in_total``."""
    electricity_kwh: float
    """Electricity used: imports less exports plus PV generation."""
    clean_share: float | None
    """Natural gas and PV in the total (tce ÷ tce)."""
    co2_t: float
    production: float
    """Units counted by the production counters of the entity's PLCs."""
    meters: list[str]
    notes: list[str]
    coefficients: list[CoefficientUsed]


@dataclass(slots=True)
class _Sum:
    """Quantities by (carrier, unit, segment), and the meters they came from."""

    quantities: dict[tuple[str, str, int], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    meters: set[str] = field(default_factory=set)

    def add(self, flow: Flow, meter: Meter) -> None:
        self.quantities[flow.carrier, flow.unit, flow.segment] += flow.quantity
        self.meters.add(meter.name)

    def merge(self, other: _Sum) -> None:
        for key, quantity in other.quantities.items():
            self.quantities[key] += quantity
        self.meters |= other.meters


@dataclass(frozen=True, slots=True)
class Accounting:
    """How quantities become tonnes of standard coal."""

    table: Table
    splits: Sequence[date]
    period: Period
    basis: Basis = Basis.EQUIVALENT
    water_in_total: bool = False
    region: str | None = None

    def segment_day(self, segment: int) -> date:
        return self.period.first_day if segment == 0 else self.splits[segment - 1]

    def coefficient(self, kind: Kind, carrier: str, segment: int, firm: str | None) -> Coefficient:
        """Exports are converted (and credited CO₂) at the grid electricity coefficient."""
        lookup = ELECTRICITY if carrier == EXPORT else carrier
        return self.table.lookup(
            kind,
            lookup,
            self.segment_day(segment),
            basis=self.basis,
            region=self.region,
            firm=firm,
        )

    def use(self, entity: str, total: _Sum, firm: str | None = None) -> EnergyUse:
        carriers: dict[str, CarrierUse] = {}
        used: dict[tuple[str, str, date], CoefficientUsed] = {}
        notes: list[str] = []
        production = 0.0
        for (carrier, unit, segment), quantity in sorted(total.quantities.items()):
            if carrier == PRODUCT:
                production += quantity
                continue
            name = ELECTRICITY if carrier == EXPORT else carrier
            tce = co2 = 0.0
            for kind in (Kind.CONVERSION, Kind.EMISSION):
                try:
                    coefficient = self.coefficient(kind, carrier, segment, firm)
                except CoefficientError as err:
                    notes.append(f"{carrier}: {err}")
                    continue
                amount = coefficient.apply(quantity, unit) / 1000
                if kind is Kind.CONVERSION:
                    tce += amount
                else:
                    co2 += amount
                used[coefficient.carrier, kind.value, coefficient.valid_from] = _used(coefficient)
            entry = carriers.get(name)
            if entry is None:
                in_total = name not in WORKING_MEDIA or self.water_in_total
                entry = carriers[name] = CarrierUse(
                    carrier=name, unit=unit, quantity=0.0, tce=0.0, co2_t=0.0, in_total=in_total
                )
            entry.quantity += quantity
            entry.tce += tce
            entry.co2_t += co2
        counted = [c for c in carriers.values() if c.in_total]
        total_tce = sum(c.tce for c in counted)
        clean = sum(c.tce for c in counted if c.carrier in CLEAN)
        electricity = sum(c.quantity for c in carriers.values() if c.carrier in (ELECTRICITY, PV))
        if any(c.placeholder for c in used.values()):
            notes.append("a coefficient used is a placeholder, not an official figure")
        return EnergyUse(
            entity=entity,
            start=self.period.start,
            end=self.period.end,
            basis=self.basis,
            carriers=sorted(carriers.values(), key=lambda c: c.carrier),
            total_tce=total_tce,
            electricity_kwh=electricity,
            clean_share=clean / total_tce if total_tce > 0 else None,
            co2_t=sum(c.co2_t for c in carriers.values()),
            production=production,
            meters=sorted(total.meters),
            notes=notes,
            coefficients=sorted(used.values(), key=lambda c: (c.carrier, c.kind, c.valid_from)),
        )


def _used(c: Coefficient) -> CoefficientUsed:
    return CoefficientUsed(
        carrier=c.carrier,
        kind="conversion" if c.kind is Kind.CONVERSION else "emission",
        value=c.value,
        unit=c.unit,
        valid_from=c.valid_from,
        source=c.source,
        basis=None if c.basis is None else c.basis.value,
        placeholder=c.placeholder,
    )


# --- who counts what ----------------------------------------------------------------------------


def firm_sum(hierarchy: Hierarchy, firm: Firm, flows: Iterable[Flow]) -> _Sum:
    """A firm's boundary meters (level 1), exports subtracted; its PLCs' production."""
    total = _Sum()
    for flow in flows:
        meter = hierarchy.meters[flow.device_id]
        if meter.firm_id != firm.id:
            continue
        if flow.carrier == PRODUCT or meter.level == 1:
            total.add(flow, meter)
    return total


def node_sum(hierarchy: Hierarchy, node: Node, flows: Sequence[Flow]) -> _Sum:
    """A line's meters; a workshop's own meters, or its lines' for carriers it has none of."""
    own = _Sum()
    for flow in flows:
        meter = hierarchy.meters[flow.device_id]
        if meter.workshop_id == node.id and flow.carrier != EXPORT:
            own.add(flow, meter)
    if node.kind == "line":
        return own
    have = {carrier for carrier, _, _ in own.quantities}
    for child in hierarchy.nodes.values():
        if child.parent_id != node.id:
            continue
        line = node_sum(hierarchy, child, flows)
        for (carrier, unit, segment), quantity in line.quantities.items():
            if carrier not in have:
                own.quantities[carrier, unit, segment] += quantity
        own.meters |= line.meters
    return own


def device_sum(hierarchy: Hierarchy, device_id: int, flows: Iterable[Flow]) -> _Sum:
    total = _Sum()
    for flow in flows:
        if flow.device_id == device_id:
            total.add(flow, hierarchy.meters[device_id])
    return total


def _signed(flows: Iterable[Flow]) -> list[Flow]:
    """Exports as negative quantities of their own carrier key (``electricity_export``)."""
    return [
        Flow(f.device_id, f.carrier, f.unit, f.segment, -f.quantity) if f.carrier == EXPORT else f
        for f in flows
    ]


# --- the balance of a firm -----------------------------------------------------------------------


class BalanceLine(BaseModel):
    carrier: str
    unit: str
    boundary: float
    """What the site-boundary meters counted (electricity: plus PV generation)."""
    sub_metered: float
    """The outermost sub-meters: a line's meter is left out when its workshop has one."""
    unmetered: float
    unmetered_share: float | None
    sub_meters: list[str]


def balance(hierarchy: Hierarchy, firm: Firm, flows: Sequence[Flow]) -> list[BalanceLine]:
    """Boundary against sub-meters, per carrier that has both: the difference is losses and
    loads no sub-meter sees (lighting, offices, transformer and cable losses)."""
    boundary: dict[str, float] = defaultdict(float)
    units: dict[str, str] = {}
    subs: dict[str, float] = defaultdict(float)
    names: dict[str, set[str]] = defaultdict(set)
    covered = _metered_nodes(hierarchy, firm, flows)
    for flow in flows:
        meter = hierarchy.meters[flow.device_id]
        if meter.firm_id != firm.id or flow.carrier == PRODUCT:
            continue
        carrier = ELECTRICITY if flow.carrier in (EXPORT, PV) else flow.carrier
        if meter.level == 1:
            boundary[carrier] += -flow.quantity if flow.carrier == EXPORT else flow.quantity
            units.setdefault(carrier, flow.unit)
        elif flow.carrier != EXPORT and not _nested(hierarchy, meter, flow.carrier, covered):
            subs[carrier] += flow.quantity
            names[carrier].add(meter.name)
    lines = []
    for carrier in sorted(set(boundary) & set(subs)):
        unmetered = boundary[carrier] - subs[carrier]
        lines.append(
            BalanceLine(
                carrier=carrier,
                unit=units[carrier],
                boundary=boundary[carrier],
                sub_metered=subs[carrier],
                unmetered=unmetered,
                unmetered_share=unmetered / boundary[carrier] if boundary[carrier] else None,
                sub_meters=sorted(names[carrier]),
            )
        )
    return lines


def _metered_nodes(hierarchy: Hierarchy, firm: Firm, flows: Iterable[Flow]) -> set[tuple[int, str]]:
    """(workshop or line id, carrier) that a non-boundary meter measures."""
    found = set()
    for flow in flows:
        meter = hierarchy.meters[flow.device_id]
        if meter.firm_id == firm.id and meter.level != 1 and meter.workshop_id is not None:
            found.add((meter.workshop_id, flow.carrier))
    return found


def _nested(
    hierarchy: Hierarchy, meter: Meter, carrier: str, covered: set[tuple[int, str]]
) -> bool:
    """Whether a meter's node sits inside another node metered for the same carrier."""
    node = hierarchy.nodes.get(meter.workshop_id) if meter.workshop_id is not None else None
    while node is not None and node.parent_id is not None:
        if (node.parent_id, carrier) in covered:
            return True
        node = hierarchy.nodes.get(node.parent_id)
    return False


# --- entities ------------------------------------------------------------------------------------

EntityKind = Literal["district", "park", "firm", "workshop", "line", "device"]


@dataclass(frozen=True, slots=True)
class Entity:
    """What is accounted for: ``district``, ``park:<code>``, ``firm:<code>``,
    ``workshop:<firm>/<name>``, ``line:<firm>/<id>`` or ``device:<firm>/<name>``."""

    kind: EntityKind
    code: str = ""
    """The park's or firm's code; for workshops, lines and devices, the firm's."""
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Entity:
        kind, _, rest = text.partition(":")
        if kind == "district" and not rest:
            return cls("district")
        if kind in ("park", "firm") and rest and "/" not in rest:
            return cls(kind, rest)  # type: ignore[arg-type]
        firm, _, name = rest.partition("/")
        if kind in ("workshop", "line", "device") and firm and name:
            return cls(kind, firm, name)  # type: ignore[arg-type]
        raise EnergyError(
            f"{text!r} is not district, park:<code>, firm:<code>, workshop:<firm>/<name>, "
            "line:<firm>/<id> or device:<firm>/<name>"
        )

    def __str__(self) -> str:
        if self.kind == "district":
            return "district"
        return f"{self.kind}:{self.code}" + (f"/{self.name}" if self.name else "")


def firms_of(hierarchy: Hierarchy, entity: Entity) -> list[Firm]:
    """The firms an entity covers (among those ``hierarchy`` was loaded with)."""
    if entity.kind == "district":
        return sorted(hierarchy.firms.values(), key=lambda f: f.code)
    if entity.kind == "park":
        found = [
            f
            for f in hierarchy.firms.values()
            if hierarchy.parks.get(f.park_id or 0) == entity.code
        ]
        if not found:
            raise NotFound(f"no park {entity.code!r}")
        return sorted(found, key=lambda f: f.code)
    return [hierarchy.firm(entity.code)]


async def account(
    conn: psycopg.AsyncConnection[Any],
    entity: Entity,
    period: Period,
    table: Table,
    *,
    basis: Basis = Basis.EQUIVALENT,
    firm_ids: Sequence[int] | None = None,
    water_in_total: bool = False,
    hierarchy: Hierarchy | None = None,
) -> EnergyUse:
    """What ``entity`` consumed in ``period``; ``firm_ids`` limits what can be seen (None: all),
    so an entity outside it is not found. ``hierarchy``: the one loaded with those ``firm_ids``,
    when the caller has it already (several periods of one entity, every firm of a park)."""
    if hierarchy is None:
        hierarchy = await load_hierarchy(conn, firm_ids)
    firms = firms_of(hierarchy, entity)
    covered = {f.id for f in firms}
    devices = [m.device_id for m in hierarchy.meters.values() if m.firm_id in covered]
    splits = segments(period, table)
    flows = _signed(await load_flows(conn, period, devices, splits))
    accounting = Accounting(table, splits, period, basis, water_in_total)
    label = str(entity)
    if entity.kind in ("district", "park"):
        uses = [accounting.use(label, firm_sum(hierarchy, f, flows), f.code) for f in firms]
        return combine(label, period, basis, uses)
    firm = firms[0]
    if entity.kind == "firm":
        return accounting.use(label, firm_sum(hierarchy, firm, flows), firm.code)
    if entity.kind == "device":
        for meter in hierarchy.meters.values():
            if meter.firm_id == firm.id and meter.name == entity.name:
                return accounting.use(
                    label, device_sum(hierarchy, meter.device_id, flows), firm.code
                )
        raise NotFound(f"firm {firm.code!r} has no device {entity.name!r}")
    node = hierarchy.node(firm, entity.kind, entity.name)
    return accounting.use(label, node_sum(hierarchy, node, flows), firm.code)


def combine(entity: str, period: Period, basis: Basis, uses: Sequence[EnergyUse]) -> EnergyUse:
    """The sum of several entities' use (a park's firms)."""
    carriers: dict[str, CarrierUse] = {}
    coefficients: dict[tuple[str, str, date, float], CoefficientUsed] = {}
    for use in uses:
        for c in use.carriers:
            entry = carriers.setdefault(
                c.carrier, c.model_copy(update={"quantity": 0.0, "tce": 0.0, "co2_t": 0.0})
            )
            entry.quantity += c.quantity
            entry.tce += c.tce
            entry.co2_t += c.co2_t
        for k in use.coefficients:
            coefficients[k.carrier, k.kind, k.valid_from, k.value] = k
    total = sum(u.total_tce for u in uses)
    clean = sum(c.tce for c in carriers.values() if c.in_total and c.carrier in CLEAN)
    return EnergyUse(
        entity=entity,
        start=period.start,
        end=period.end,
        basis=basis,
        carriers=sorted(carriers.values(), key=lambda c: c.carrier),
        total_tce=total,
        electricity_kwh=sum(u.electricity_kwh for u in uses),
        clean_share=clean / total if total > 0 else None,
        co2_t=sum(u.co2_t for u in uses),
        production=sum(u.production for u in uses),
        meters=sorted({m for u in uses for m in u.meters}),
        notes=sorted({n for u in uses for n in u.notes}),
        coefficients=sorted(coefficients.values(), key=lambda c: (c.carrier, c.kind, c.valid_from)),
    )
