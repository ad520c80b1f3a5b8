"""Two days of the tiny park, through the store, with the simulator's ground truth beside them.

tiny-shoes' site meter starts 150 kWh below its register wrap, so it wraps in the first hour;
tiny-electronics' site meter is replaced six hours in; tiny-shoes' water meter is silent for two
hours from 10:00 on the first day. Counters are followed as a gateway follows them (the backfill),
the registry is imported first, then the history, and the truth's business.csv after it.

A counted delta is stamped with the reading that counted it, at the end of its interval, so a
period holds the truth intervals that end inside it.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from api.business import import_file as import_business
from api.coefficients import Table, load_database, seed_defaults
from api.energy import EnergyUse, Period
from api.plan import seed_defaults as seed_plan
from api.registry import import_file
from ingest.migrate import migrate
from ingest.rollups import refresh
from ingest.store import Accepted, Store
from simulators.backfill import backfill
from simulators.faults import parse_fault
from simulators.park import Park
from simulators.scenario import Scenario, load_scenario
from simulators.truth import Truth, registry
from wire.payload import parse_telemetry
from wire.topics import Topic

DatabaseFactory = Callable[[str], str]

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 2, tzinfo=CST)  # a Monday, in the past: completeness counts up to now
END = START + timedelta(days=2)
REPLACED_AT = START + timedelta(hours=6)
SILENT_FROM, SILENT_S = START + timedelta(hours=10), 7200.0
WRAP_KWH = 2**32 * 0.01  # the u32 x 0.01 kWh register of tiny-shoes' site meter

# GB/T 2589-2020 reference values (kgce per unit) and the grid factor from 2023 (kgCO2/kWh):
# expected figures are worked out with these, written here, not read from Zayton's table.
ELECTRICITY_KGCE, GAS_KGCE, WATER_KGCE = 0.1229, 1.2143, 0.0857
GRID_KGCO2, GAS_KGCO2 = 0.5703, 1.9965


@dataclass(frozen=True)
class Park2Days:
    dsn: str
    truth: list[dict[str, str]]
    """energy.csv: every counter's true quantity per 15-minute interval."""
    business: list[dict[str, str]]
    """business.csv: per firm and month, production, output value, value added, tax."""


def scenario() -> Scenario:
    tiny = load_scenario("tiny")
    shoes = tiny.firms[0]
    devices = [
        d.model_copy(update={"start": WRAP_KWH - 150.0}) if d.name == "incomer" else d
        for d in shoes.devices
    ]
    return tiny.model_copy(
        update={"firms": [shoes.model_copy(update={"devices": devices}), *tiny.firms[1:]]}
    )


@pytest.fixture(scope="session")
def park_db(pg_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Park2Days:
    dsn = pg_database("park2days")
    migrate(dsn)
    seed_defaults(dsn)
    seed_plan(dsn)
    out = tmp_path_factory.mktemp("truth")
    park = Park(scenario(), start=START.timestamp(), step_s=900)
    park.inject(
        "tiny-electronics/incomer",
        parse_fault({"type": "replace", "start": 0.0, "serial": 4242, "at": REPLACED_AT}),
    )
    park.inject(
        "tiny-shoes/water-main",
        parse_fault({"type": "silent", "at": SILENT_FROM, "duration_s": SILENT_S}),
    )
    payloads: list[tuple[str, bytes]] = []

    async def send(topic: str, payload: bytes) -> None:
        payloads.append((topic, payload))

    async def run() -> None:
        with Truth(park, out, interval_s=900):
            await backfill(park, send, end=END.timestamp(), batch_readings=500)
        store = await Store.connect(dsn)
        try:
            for topic, payload in payloads:
                parsed = Topic.parse(topic)
                batch = parse_telemetry(payload, parsed)
                await store.write([Accepted(parsed, batch, payload)])
        finally:
            await store.close()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await refresh(conn, store.storage)

    # The registry first, as a park would be set up; then its history arrives.
    (out / "registry.json").write_text(json.dumps(registry(park)))
    import_file(dsn, out / "registry.json")
    asyncio.run(run())
    import_business(dsn, out / "business.csv")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # What the gateways would have reported in their status: a poll every 15 minutes.
        conn.execute("UPDATE zayton.devices SET interval_s = 900")
    with (out / "energy.csv").open() as handle:
        truth = list(csv.DictReader(handle))
    with (out / "business.csv").open() as handle:
        business = list(csv.DictReader(handle))
    return Park2Days(dsn, truth, business)


def true_sum(data: Park2Days, period: Period, firm: str, device: str, point: str) -> float:
    """What flowed through a counter in the truth intervals ending inside ``period``."""
    total = 0.0
    for row in data.truth:
        end = datetime.fromisoformat(row["interval_end"])
        key = (row["firm"], row["device"], row["point"])
        if key == (firm, device, point) and period.start <= end < period.end:
            total += float(row["quantity"])
    return total


def lost_to_replacement(data: Park2Days, period: Period) -> float:
    """The interval in which the new meter was fitted: its first reading is only its base."""
    for row in data.truth:
        key = (row["firm"], row["device"], row["point"])
        if key == ("tiny-electronics", "incomer", "energy_import_kwh"):
            end = datetime.fromisoformat(row["interval_end"])
            if end == REPLACED_AT and period.start <= end < period.end:
                return float(row["quantity"])
    return 0.0


def coefficient_table(dsn: str) -> Table:
    with psycopg.connect(dsn) as conn:
        return load_database(conn)


def carrier(use: EnergyUse, name: str) -> float:
    return next(c.quantity for c in use.carriers if c.carrier == name)
