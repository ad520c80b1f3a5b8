"""Every fault type of the simulator, as a Modbus client sees it over real sockets.

Each test serves the tiny park (no ticker: simulated time moves only by ``park.advance``), reads a
device the way the gateway does (:mod:`tests.simclient`), injects one fault and checks that the
client sees exactly that fault, and the normal device again once it is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from profiles.codec import DataType, Encoding, WordOrder, decode
from profiles.plan import plan_reads
from simulators.faults import parse_fault
from simulators.park import FaultRecord
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from simulators.simdevice import FaultError
from tests.simclient import ExceptionReply, Readings, modbus_client, read_points, read_raw, request
from wire.payload import Quality

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 23, 10, 0, tzinfo=CST)  # a Monday, 10:00: the lines run
INCOMER = "tiny-shoes/incomer"  # zayton-meter-u32-cdab: uint32 counters x 0.01 kWh
EVA_METER = "tiny-shoes/eva-1-meter"  # zayton-meter-f32: float32 ABCD, float counters
STEP_KWH = 0.01  # one register step of the u32 meter's energy counters
TIMEOUT_S = 0.3  # a reply timeout well below the 1 s of the slow fault


@pytest.fixture
def sim() -> ParkSimulator:
    """The tiny park on ephemeral ports, not started yet (``async with sim`` serves it)."""
    clock = SimClock(start=START.timestamp(), speed=1.0)
    return ParkSimulator(load_scenario("tiny"), base_port=0, tick_s=0, clock=clock)


def endpoint(sim: ParkSimulator, key: str) -> tuple[int, int]:
    """(port, unit id) of device ``<firm>/<device>``."""
    device = sim.park.device(key)
    for unit_id, served in sim.park.gateways[device.gateway].devices.items():
        if f"{served.firm}/{served.name}" == key:
            return sim.ports[device.gateway], unit_id
    raise LookupError(f"{key} is not served by {device.gateway}")


@asynccontextmanager
async def connect(
    sim: ParkSimulator, key: str, reply_timeout: float = 2.0
) -> AsyncIterator[tuple[AsyncModbusTcpClient, int]]:
    """A fresh connection to the port serving ``key``, and its unit id there."""
    port, unit_id = endpoint(sim, key)
    async with modbus_client(port, reply_timeout=reply_timeout) as client:
        yield client, unit_id


async def read(sim: ParkSimulator, key: str, reply_timeout: float = 2.0) -> Readings:
    """Every point of ``key``, read on a fresh connection as the gateway reads it."""
    async with connect(sim, key, reply_timeout) as (client, unit_id):
        return await read_points(client, unit_id, sim.park.device(key).profile)


def good(readings: Readings, point: str) -> float:
    value, quality = readings[point]
    assert quality is Quality.GOOD, (point, value, quality)
    assert value is not None
    return value


def inject(sim: ParkSimulator, key: str, **fault: object) -> FaultRecord:
    return sim.park.inject(key, parse_fault(fault))


def true_kwh(sim: ParkSimulator, key: str) -> float:
    """The true energy imported since the simulation began (never touched by faults)."""
    return sim.park.device(key).counters["energy_import_kwh"].true


def gauge(sim: ParkSimulator, key: str, point: str) -> float:
    return sim.park.device(key).model.gauges[point]


@pytest.mark.parametrize(
    ("modulus", "raw_modulus"), [("register", 2**32), ("decimal", 10**9)], ids=str
)
def test_wrap(sim: ParkSimulator, modulus: str, raw_modulus: int) -> None:
    async def scenario() -> None:
        async with sim:
            top = raw_modulus * STEP_KWH
            installed = good(await read(sim, INCOMER), "energy_import_kwh")
            assert 1000 < installed < top - 1000
            inject(sim, INCOMER, type="wrap", modulus=modulus, before=5.0)
            assert good(await read(sim, INCOMER), "energy_import_kwh") == pytest.approx(
                top - 5.0, abs=STEP_KWH
            )
            since = true_kwh(sim, INCOMER)
            sim.park.advance(sim.park.now + 600)  # ~20 kWh at the incomer's 120-140 kW
            consumed = true_kwh(sim, INCOMER) - since
            assert consumed > 5.0
            wrapped = good(await read(sim, INCOMER), "energy_import_kwh")
            assert 0 <= wrapped < consumed
            assert wrapped == pytest.approx(consumed - 5.0, abs=STEP_KWH)

    asyncio.run(scenario())


def test_wrap_is_refused_on_a_float_counter(sim: ParkSimulator) -> None:
    with pytest.raises(FaultError, match="float counters do not"):
        inject(sim, EVA_METER, type="wrap")
    assert sim.park.faults == {}


def test_reset(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            before = await read(sim, INCOMER)
            assert good(before, "energy_import_kwh") > 1000
            inject(sim, INCOMER, type="reset")
            after = await read(sim, INCOMER)
            assert good(after, "energy_import_kwh") == 0.0
            assert good(after, "energy_export_kwh") == 0.0
            assert good(after, "serial_number") == good(before, "serial_number")
            since = true_kwh(sim, INCOMER)
            sim.park.advance(sim.park.now + 300)
            consumed = true_kwh(sim, INCOMER) - since
            counted = good(await read(sim, INCOMER), "energy_import_kwh")
            assert counted == pytest.approx(consumed, abs=STEP_KWH)
            assert counted <= consumed

    asyncio.run(scenario())


def test_replace(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            before = await read(sim, INCOMER)
            assert good(before, "serial_number") != 42424242
            assert good(before, "energy_import_kwh") > 1000 + 1234.5
            inject(sim, INCOMER, type="replace", start=1234.5, serial=42424242)
            after = await read(sim, INCOMER)
            assert good(after, "serial_number") == 42424242
            assert good(after, "energy_import_kwh") == pytest.approx(1234.5, abs=STEP_KWH)

    asyncio.run(scenario())


def test_zero(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            power = gauge(sim, INCOMER, "active_power_kw")
            assert power > 10
            assert good(await read(sim, INCOMER), "active_power_kw") == pytest.approx(
                power, abs=1e-3
            )
            inject(sim, INCOMER, type="zero", reads=1, points=["active_power_kw"])
            zeroed = await read(sim, INCOMER)
            assert good(zeroed, "active_power_kw") == 0.0
            assert good(zeroed, "voltage_l1_v") > 200  # only the point named
            again = good(await read(sim, INCOMER), "active_power_kw")
            assert again == pytest.approx(power, abs=1e-3)

    asyncio.run(scenario())


def test_nan(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            power = gauge(sim, EVA_METER, "active_power_kw")
            assert good(await read(sim, EVA_METER), "active_power_kw") == pytest.approx(power)
            inject(sim, EVA_METER, type="nan", reads=2, points=["active_power_kw"])
            for _ in range(2):
                readings = await read(sim, EVA_METER)
                assert readings["active_power_kw"] == (None, Quality.BAD)
                assert good(readings, "voltage_l1_v") > 200
            assert good(await read(sim, EVA_METER), "active_power_kw") == pytest.approx(power)

    asyncio.run(scenario())


def test_slow(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            await read(sim, INCOMER, reply_timeout=TIMEOUT_S)
            record = inject(sim, INCOMER, type="slow", delay_s=1.0)
            with pytest.raises(ModbusIOException, match="No response received"):
                await read(sim, INCOMER, reply_timeout=TIMEOUT_S)
            assert endpoint(sim, EVA_METER)[0] == endpoint(sim, INCOMER)[0]
            assert good(await read(sim, EVA_METER, reply_timeout=TIMEOUT_S), "voltage_l1_v") > 200
            sim.park.clear(record.id)
            assert good(await read(sim, INCOMER, reply_timeout=TIMEOUT_S), "voltage_l1_v") > 200

    asyncio.run(scenario())


def test_silent(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            await read(sim, INCOMER, reply_timeout=TIMEOUT_S)
            record = inject(sim, INCOMER, type="silent")
            with pytest.raises(ModbusIOException, match="No response received"):
                await read(sim, INCOMER, reply_timeout=TIMEOUT_S)
            assert endpoint(sim, EVA_METER)[0] == endpoint(sim, INCOMER)[0]
            assert good(await read(sim, EVA_METER), "voltage_l1_v") > 200
            sim.park.clear(record.id)
            assert good(await read(sim, INCOMER), "voltage_l1_v") > 200

    asyncio.run(scenario())


@pytest.mark.parametrize("code", [2, 11])
def test_exception(sim: ParkSimulator, code: int) -> None:
    plan = plan_reads(sim.park.device(INCOMER).profile)[0]  # all 23 holding registers
    where = (plan.function_code, plan.address, plan.count)

    async def scenario() -> None:
        async with sim, connect(sim, INCOMER) as (client, unit_id):
            assert not (await request(client, unit_id, *where)).isError()
            record = inject(sim, INCOMER, type="exception", code=code)
            rr = await request(client, unit_id, *where)
            assert rr.isError()
            assert rr.exception_code == code
            with pytest.raises(ExceptionReply) as raised:
                await read_points(client, unit_id, sim.park.device(INCOMER).profile)
            assert raised.value.code == code
            sim.park.clear(record.id)
            assert len(await read_raw(client, unit_id, *where)) == plan.count

    asyncio.run(scenario())


def test_word_order(sim: ParkSimulator) -> None:
    point = sim.park.device(EVA_METER).registers.bindings["active_power_kw"].point
    assert (point.table, point.type) == ("input", DataType.FLOAT32)
    abcd = Encoding(DataType.FLOAT32, WordOrder.ABCD)
    cdab = Encoding(DataType.FLOAT32, WordOrder.CDAB)

    async def scenario() -> None:
        async with sim, connect(sim, EVA_METER) as (client, unit_id):
            power = gauge(sim, EVA_METER, "active_power_kw")
            words = await read_raw(client, unit_id, 4, point.address, 2)
            assert decode(words, abcd) == pytest.approx(power, rel=1e-6)
            record = inject(sim, EVA_METER, type="word_order", order="CDAB")
            words = await read_raw(client, unit_id, 4, point.address, 2)
            assert decode(words, abcd) != pytest.approx(power, rel=1e-6)
            assert decode(words, cdab) == pytest.approx(power, rel=1e-6)
            sim.park.clear(record.id)
            words = await read_raw(client, unit_id, 4, point.address, 2)
            assert decode(words, abcd) == pytest.approx(power, rel=1e-6)

    asyncio.run(scenario())


def test_clock_drift(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            now = sim.park.now
            assert good(await read(sim, INCOMER), "device_clock_s") == pytest.approx(now, abs=1)
            inject(sim, INCOMER, type="clock_drift", offset_s=120, ppm=1000)
            clock = good(await read(sim, INCOMER), "device_clock_s")
            assert clock == pytest.approx(now + 120, abs=1)
            sim.park.advance(now + 3600)
            clock = good(await read(sim, INCOMER), "device_clock_s")
            assert clock == pytest.approx(now + 3600 + 120 + 3.6, abs=1)

    asyncio.run(scenario())


def test_scheduled_fault(sim: ParkSimulator) -> None:
    at = START + timedelta(minutes=10)
    ends = at + timedelta(minutes=5)

    async def answers() -> bool:
        try:
            await read(sim, INCOMER, reply_timeout=TIMEOUT_S)
        except ModbusIOException:
            return False
        return True

    async def scenario() -> None:
        async with sim:
            record = inject(sim, INCOMER, type="silent", at=at, duration_s=300)
            assert record.state == "pending"
            assert await answers()
            sim.park.advance(at.timestamp() - 1)
            assert await answers()
            sim.park.advance(at.timestamp())
            assert record.state == "active"
            assert not await answers()
            sim.park.advance(ends.timestamp() - 1)
            assert not await answers()
            sim.park.advance(ends.timestamp())
            assert record.state == "done"
            assert await answers()

    asyncio.run(scenario())


def test_clearing_one_fault_keeps_an_overlapping_one(sim: ParkSimulator) -> None:
    async def scenario() -> None:
        async with sim:
            first = inject(sim, INCOMER, type="silent")
            second = inject(sim, INCOMER, type="silent", duration_s=600)
            sim.park.clear(first.id)
            assert second.state == "active"
            with pytest.raises(ModbusIOException, match="No response received"):
                await read(sim, INCOMER, reply_timeout=TIMEOUT_S)

    asyncio.run(scenario())
