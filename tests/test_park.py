"""The simulated park's physics, scenarios and ground truth, without sockets."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from profiles.files import ConfigError
from simulators.faults import Reset, parse_fault
from simulators.park import Park
from simulators.physics import GAS_M3_PER_T_STEAM, Boiler, Meter
from simulators.scenario import DeviceType, Scenario, Sector, load_scenario, scenario_library
from simulators.shifts import Schedule, Shifts, holiday, local_day
from simulators.solar import QUANZHOU_LATITUDE, QUANZHOU_LONGITUDE, solar_elevation
from simulators.truth import Truth
from zayton.simulate import parse_fault_option

pytestmark = pytest.mark.unit

CST = timezone(timedelta(hours=8))
MONDAY_0000 = datetime(2026, 11, 23, tzinfo=CST).timestamp()


def tiny(seed: int | None = None) -> Scenario:
    scenario = load_scenario("tiny")
    if seed is None:
        return scenario
    park = scenario.park.model_copy(update={"seed": seed})
    return scenario.model_copy(update={"park": park})


def registers(park: Park) -> dict[str, list[int]]:
    return {
        key: [word for name in device.registers.bindings for word in device.registers.raw(name)]
        for key, device in park.devices.items()
    }


def test_shipped_scenarios_load_and_the_default_park_is_a_whole_park() -> None:
    assert {"tiny", "licheng"} <= set(scenario_library())
    licheng = load_scenario("licheng")
    types = {device.type for firm in licheng.firms for device in firm.devices}
    gateways = [gateway for firm in licheng.firms for gateway in firm.gateways]
    assert len(licheng.firms) >= 20
    assert licheng.device_count >= 200
    assert len(gateways) >= 5
    assert types == set(DeviceType)
    assert {firm.sector for firm in licheng.firms} == set(Sector)
    assert {gateway.uplink.value for gateway in gateways} >= {"5g", "wired"}
    assert Park(licheng, start=MONDAY_0000, step_s=900).devices


def test_the_same_seed_gives_the_same_park_whatever_the_steps_taken() -> None:
    one = Park(tiny(), start=MONDAY_0000, step_s=60)
    two = Park(tiny(), start=MONDAY_0000, step_s=60)
    one.advance(MONDAY_0000 + 6 * 3600)
    for minutes in range(7, 361, 7):  # uneven advances, several cells at a time
        two.advance(MONDAY_0000 + minutes * 60)
    two.advance(MONDAY_0000 + 6 * 3600)
    assert registers(one) == registers(two)
    other = Park(tiny(seed=8), start=MONDAY_0000, step_s=60)
    other.advance(MONDAY_0000 + 6 * 3600)
    assert registers(other) != registers(one)


def test_counters_integrate_exactly_what_the_devices_report() -> None:
    park = Park(tiny(), start=MONDAY_0000 + 8 * 3600, step_s=60)
    expected: dict[tuple[str, str], float] = defaultdict(float)
    for minute in range(1, 241):
        for key, device in park.devices.items():
            for name, rate in device.model.rates.items():
                expected[key, name] += rate / 60
        before = {k: {n: c.true for n, c in d.counters.items()} for k, d in park.devices.items()}
        park.advance(MONDAY_0000 + 8 * 3600 + minute * 60)
        for key, device in park.devices.items():
            for name, counter in device.counters.items():
                expected[key, name] -= counter.true - before[key][name]
    assert expected
    assert max(abs(v) for v in expected.values()) < 1e-6


def test_site_meter_sees_every_load_plus_losses_minus_pv() -> None:
    park = Park(tiny(), start=MONDAY_0000 + 10 * 3600, step_s=60)
    firm = park.firms["tiny-shoes"]
    meters = {d.name: d.model for d in park.devices.values() if d.firm == "tiny-shoes"}
    site = meters["incomer"]
    assert isinstance(site, Meter)
    lines = sum(line.kw for line in firm.lines.values())
    compressors = sum(c.kw for c in firm.compressors.values())
    pv = sum(inverter.kw for inverter in firm.inverters)
    assert lines > 0
    assert compressors > 0
    assert pv > 0  # 10:00 on a November day in Quanzhou
    unmetered = site.kw() + pv - (lines + compressors) * (1 + firm.spec.losses)
    assert 0 < unmetered < 2 * firm.spec.unmetered_kw
    sub_metered = sum(m.gauges["active_power_kw"] for n, m in meters.items() if n.endswith("meter"))
    assert sub_metered < site.kw() + pv


def test_boilers_burn_gas_for_steam_and_raise_it_before_the_shift() -> None:
    start = MONDAY_0000 + 7 * 3600 + 1800  # 07:30, warm-up before the 08:00 shift
    park = Park(tiny(), start=start, step_s=60)
    boiler = park.devices["tiny-shoes/boiler-1"].model
    assert isinstance(boiler, Boiler)
    warm_up = boiler.steam_th
    assert boiler.gas_m3h == pytest.approx(GAS_M3_PER_T_STEAM * boiler.steam_th)
    park.advance(start + 3 * 3600)
    assert boiler.steam_th < warm_up
    assert boiler.gauges["boiler_state"] == 1


def test_pv_follows_the_sun_over_quanzhou() -> None:
    solstice_noon = datetime(2026, 6, 21, 12, 5, tzinfo=CST).timestamp()
    elevation = solar_elevation(solstice_noon, QUANZHOU_LATITUDE, QUANZHOU_LONGITUDE)
    assert elevation == pytest.approx(90 - (QUANZHOU_LATITUDE - 23.44), abs=1.5)
    park = Park(tiny(), start=MONDAY_0000 + 2 * 3600, step_s=300)
    inverter = park.devices["tiny-shoes/pv-roof"]
    assert inverter.model.gauges["pv_power_kw"] == 0
    produced = []
    for hour in range(3, 24):
        park.advance(MONDAY_0000 + hour * 3600)
        produced.append(inverter.model.gauges["pv_power_kw"])
    assert max(produced) > 0
    assert max(produced) <= 200 * 1.05  # never above the array's peak power
    assert produced[-1] == 0  # 23:00
    daily = inverter.registers.served("pv_energy_daily_kwh")
    assert daily == pytest.approx(inverter.counters["pv_energy_total_kwh"].true, abs=0.02)


def test_factories_rest_on_sundays_and_for_the_spring_festival() -> None:
    assert holiday(local_day(datetime(2026, 2, 17, 12, tzinfo=CST).timestamp()))
    assert not holiday(local_day(datetime(2026, 3, 10, 12, tzinfo=CST).timestamp()))
    two_shifts = Schedule(Shifts.TWO, days_per_week=6)
    assert two_shifts.active(MONDAY_0000 + 10 * 3600)
    assert not two_shifts.active(MONDAY_0000 + 6 * 86400 + 10 * 3600)  # Sunday
    assert not two_shifts.active(MONDAY_0000 + 3 * 3600)

    def day_kwh(start: float) -> float:
        park = Park(tiny(), start=start, step_s=300)
        counter = park.devices["tiny-shoes/incomer"].counters["energy_import_kwh"]
        park.advance(start + 86400)
        return counter.true

    monday, sunday = day_kwh(MONDAY_0000), day_kwh(MONDAY_0000 + 6 * 86400)
    festival = day_kwh(datetime(2026, 2, 18, tzinfo=CST).timestamp())
    assert sunday < 0.6 * monday
    assert festival < 0.6 * monday


def test_plc_counts_what_its_line_produced() -> None:
    park = Park(tiny(), start=MONDAY_0000 + 8 * 3600, step_s=60)
    plc = park.devices["tiny-shoes/plc-eva-1"]
    line = park.firms["tiny-shoes"].lines["eva-1"]
    first = plc.registers.served("production_count")
    produced = line.produced
    park.advance(MONDAY_0000 + 12 * 3600)
    counted = plc.registers.served("production_count") - first
    assert counted == pytest.approx(line.produced - produced, abs=1.0)
    assert counted > 0.5 * 10 * 60 * 4  # 10 pairs a minute at full speed, 4 hours


def test_ground_truth_files_hold_the_true_flows(tmp_path: Path) -> None:
    start = MONDAY_0000
    park = Park(tiny(), start=start, step_s=60)
    truth_counters = {
        (k, n): c.true for k, d in park.devices.items() for n, c in d.counters.items()
    }
    park.inject("tiny-shoes/incomer", Reset(at=datetime.fromtimestamp(start + 3600, CST)))
    with Truth(park, tmp_path, interval_s=900):
        park.advance(start + 86400)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    with (tmp_path / "energy.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        sums[f"{row['firm']}/{row['device']}", row["point"]] += float(row["quantity"])
    assert len(rows) == 96 * len(truth_counters)
    for (key, name), before in truth_counters.items():
        true = park.devices[key].counters[name].true - before
        assert sums[key, name] == pytest.approx(true, abs=1e-3), (key, name)
    reset = park.devices["tiny-shoes/incomer"].counters["energy_import_kwh"]
    assert reset.shown < sums["tiny-shoes/incomer", "energy_import_kwh"]  # the meter restarted
    with (tmp_path / "business.csv").open() as handle:
        business = {row["firm"]: row for row in csv.DictReader(handle)}
    shoes = business["tiny-shoes"]
    produced = sums["tiny-shoes/plc-eva-1", "production_count"]
    produced += sums["tiny-shoes/plc-sewing-1", "production_count"]
    assert float(shoes["production_units"]) == pytest.approx(produced, abs=0.5)
    assert float(shoes["output_value_10k_yuan"]) == pytest.approx(produced * 85 / 10_000, rel=1e-3)
    assert float(shoes["days_covered"]) == pytest.approx(1.0)
    registry = json.loads((tmp_path / "park.json").read_text())
    assert {f["id"] for f in registry["firms"]} == {"tiny-shoes", "tiny-electronics"}
    incomer = registry["firms"][0]["devices"][0]
    assert (incomer["name"], incomer["level"], incomer["unit_id"]) == ("incomer", 1, 1)
    levels = {d["name"]: d["level"] for d in registry["firms"][0]["devices"]}
    # The boiler's own gas counter is equipment, not a second boundary meter beside gas-main.
    assert (levels["gas-main"], levels["boiler-1"], levels["pv-roof"]) == (1, 3, 1)
    assert (levels["sewing-meter"], levels["eva-1-meter"], levels["plc-eva-1"]) == (2, 3, 3)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "park.toml"
    path.write_text(text)
    return path


SCENARIO = """
[park]
id = "p"
name = "P"
[[firms]]
id = "f"
name = "F"
sector = "textile"
land_mu = 10
headcount = 10
product = {{ unit = "pair", price_yuan = 10 }}
gateways = [{{ id = "gw" }}]
lines = [{{ id = "l1", workshop = "w", kw = 10, rate_per_min = 1 }}]
devices = [{devices}]
"""


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ('{ name = "m", type = "meter", measures = "line:nope" }', "measures 'line:nope'"),
        ('{ name = "m", type = "meter", measures = "workshop:x" }', "no line is in that"),
        ('{ name = "p", type = "plc" }', "a plc needs line"),
        ('{ name = "c", type = "compressor" }', "a compressor needs kw"),
        ('{ name = "m", type = "meter", gateway = "gw2" }', "no gateway 'gw2'"),
        ('{ name = "m", type = "meter" }, { name = "m", type = "water" }', "defined twice"),
        ('{ name = "m", type = "meter", faults = [{ type = "melt" }] }', "faults.0"),
        ('{ name = "m", type = "meter", colour = "red" }', "colour"),
    ],
)
def test_scenario_mistakes_are_refused_with_file_and_key(
    tmp_path: Path, devices: str, message: str
) -> None:
    path = write(tmp_path, SCENARIO.format(devices=devices))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)
    assert "firms.0" in str(caught.value)
    assert message in str(caught.value)


def test_a_fault_the_device_cannot_show_is_refused_up_front(tmp_path: Path) -> None:
    devices = '{ name = "m", type = "meter", faults = [{ type = "wrap" }] }'  # float32 counters
    scenario = load_scenario(write(tmp_path, SCENARIO.format(devices=devices)))
    with pytest.raises(ValueError, match="could wrap"):
        Park(scenario, start=MONDAY_0000)


def test_replicated_parks_rename_firms_and_gateways() -> None:
    big = tiny().replicated(3)
    assert big.device_count == 3 * tiny().device_count
    assert len({firm.id for firm in big.firms}) == 6
    assert big.firms[2].gateways[0].id == "gw-tiny-shoes-c2"


def test_fault_options_from_the_command_line() -> None:
    device, fault = parse_fault_option("tiny-shoes/incomer:wrap:before=20,modulus=decimal")
    assert device == "tiny-shoes/incomer"
    assert fault == parse_fault({"type": "wrap", "before": 20, "modulus": "decimal"})
    _, zero = parse_fault_option("f/m:zero:points=active_power_kw;energy_import_kwh,reads=2")
    assert zero == parse_fault(
        {"type": "zero", "points": ["active_power_kw", "energy_import_kwh"], "reads": 2}
    )
    with pytest.raises(ConfigError, match="DEVICE:TYPE"):
        parse_fault_option("f/m")
    with pytest.raises(ConfigError, match="slow"):
        parse_fault_option("f/m:slow:delay_s=-1")
