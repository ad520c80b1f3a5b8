"""The gateway as a Sparkplug B edge node, against the simulated park and a real broker: births
with aliases, seq in order, data equal to the gateway's own telemetry, rebirth on command, and
NDEATH wills whose bdSeq matches the birth and survives a restart."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import Device, load_config
from gateway.sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    Payload,
    alias_names,
    decode_payload,
    encode_payload,
    parse_topic,
    topic,
)
from gateway.sparkplug import MessageType as T
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator
from tests.collector import Collector
from tests.processes import start_zayton
from tests.test_gateway import ELECTRONICS, batches, run_for, write_config
from wire.broker import BrokerSettings

pytestmark = pytest.mark.integration

NODE = ELECTRONICS


def sparkplug(group: str) -> Callable[[str], str]:
    return lambda text: f"{text}\n[sparkplug]\ngroup_id = {group!r}\n"


def messages(collector: Collector) -> list[tuple[T, str | None, Payload]]:
    found: list[tuple[T, str | None, Payload]] = []
    for text, payload in collector.snapshot():
        where = parse_topic(text)
        if where.message_type in (T.NCMD, T.DCMD):
            continue
        found.append((where.message_type, where.device_id, decode_payload(payload)))
    return found


def bd_seq(payload: Payload) -> int:
    value = next(m.value for m in payload.metrics if m.name == BD_SEQ_METRIC)
    assert isinstance(value, int)
    return value


def send_command(mqtt_url: str, text: str, payload: bytes) -> None:
    settings = BrokerSettings.from_url(mqtt_url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{time.time_ns()}")
    client.connect(settings.host, settings.port)
    client.loop_start()
    client.publish(text, payload, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_births_aliases_seq_and_values_match_the_telemetry_and_a_rebirth_repeats_the_births(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"))
    group = f"g{topic_prefix}"

    async def scenario() -> None:
        async with simulator:
            path = write_config(
                simulator,
                tmp_path,
                ELECTRONICS,
                mqtt_url=mqtt_url,
                topic_root=topic_prefix,
                edit=sparkplug(group),
            )
            config = load_config(path)
            rebirth = Payload(
                timestamp=0,
                metrics=(Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=True),),
            )

            async def ask_rebirth() -> None:
                await asyncio.sleep(1.5)
                await asyncio.to_thread(
                    send_command, mqtt_url, topic(group, T.NCMD, NODE), encode_payload(rebirth)
                )

            await asyncio.gather(run_for(config, 3.0), ask_rebirth())

    with (
        Collector(mqtt_url, f"spBv1.0/{group}/#", f"sp-{topic_prefix}") as collector,
        Collector(mqtt_url, f"{topic_prefix}/#", f"t-{topic_prefix}") as telemetry,
    ):
        asyncio.run(scenario())
        collector.wait_for(1, settle_s=0.5)
        telemetry.wait_for(1, settle_s=0.5)

    found = messages(collector)
    kinds = [kind for kind, _, _ in found]
    assert kinds[0] is T.NBIRTH, kinds[:3]
    assert kinds.count(T.NBIRTH) == 2, "the rebirth command brought no second NBIRTH"
    assert kinds[-1] is T.NDEATH, "a clean stop ends with NDEATH"

    # seq: 0 at every NBIRTH, then one up per message (mod 256); NDEATH carries none.
    expected = 0
    for kind, device, payload in found[:-1]:
        if kind is T.NBIRTH:
            expected = 0
        assert payload.seq == expected, f"{kind} {device}: seq {payload.seq}, not {expected}"
        expected = (expected + 1) % 256
    births = [p for kind, _, p in found if kind is T.NBIRTH]
    assert bd_seq(births[0]) == bd_seq(births[1]) == bd_seq(found[-1][2])
    properties = {m.name: m.value for m in births[0].metrics}
    assert properties["Properties/Site"] == "tiny-electronics"
    assert properties["Properties/Uplink"] in {"5g", "wired", "nb-iot", "4g", "wifi"}

    # Every DDATA metric is an alias declared by the device's DBIRTH, never a name.
    names: dict[str, dict[int, str]] = {}
    sparkplug_values: dict[tuple[str, str, int], float | None] = {}
    devices = {d.name for d in config_devices(tmp_path)}
    reborn: set[str] = set()
    seen_second_birth = False
    for kind, device, payload in found:
        if kind is T.NBIRTH:
            seen_second_birth = bool(names)
        if kind is T.DBIRTH:
            assert device is not None
            declared = alias_names(payload)
            assert device not in names or declared == names[device], "aliases changed"
            names[device] = declared
            if seen_second_birth:
                reborn.add(device)
        if kind is T.DDATA:
            assert device in names, f"DDATA for {device} before its DBIRTH"
            for metric in payload.metrics:
                assert metric.name is None
                assert metric.alias in names[device]
                assert metric.timestamp is not None
                value = None if metric.is_null else metric.value
                assert value is None or isinstance(value, float)
                sparkplug_values[device, names[device][metric.alias], metric.timestamp] = value
    assert set(names) == devices, "every answering device is born"
    assert reborn == devices, "every device is born again after the rebirth"

    # The same polls, read from the gateway's own telemetry.
    readings = {
        (r.device, r.point, int(r.ts.timestamp() * 1000)): r.value
        for b in batches(telemetry)
        for r in b.readings
    }
    assert len(sparkplug_values) > 20
    missing = set(sparkplug_values) - set(readings)
    assert not missing, f"{len(missing)} DDATA values are not in the telemetry, e.g. {min(missing)}"
    for key, value in sparkplug_values.items():
        assert value == readings[key], key


def config_devices(directory: Path) -> tuple[Device, ...]:
    return load_config(directory / f"{ELECTRONICS}.toml").devices


def test_the_will_names_the_births_bd_seq_and_bd_seq_goes_on_after_kill_9(
    mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    simulator = ParkSimulator(load_scenario("tiny"))
    group = f"g{topic_prefix}"

    async def gateway(path: Path) -> asyncio.subprocess.Process:
        return await start_zayton("gateway", "run", str(path))

    async def until(collector: Collector, kind: T, count: int) -> None:
        deadline = time.monotonic() + 20
        while sum(1 for k, _, _ in messages(collector) if k is kind) < count:
            assert time.monotonic() < deadline, f"no {kind} #{count}"
            await asyncio.sleep(0.1)

    async def scenario(collector: Collector) -> None:
        async with simulator:
            path = write_config(
                simulator,
                tmp_path,
                ELECTRONICS,
                mqtt_url=mqtt_url,
                topic_root=topic_prefix,
                edit=sparkplug(group),
            )
            first = await gateway(path)
            await until(collector, T.DDATA, 1)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            await until(collector, T.NDEATH, 1)  # the broker's will, not the gateway's
            second = await gateway(path)
            await until(collector, T.NBIRTH, 2)
            second.send_signal(signal.SIGTERM)
            assert await second.wait() == 0
            await until(collector, T.NDEATH, 2)

    with Collector(mqtt_url, f"spBv1.0/{group}/#", f"sp-{topic_prefix}") as collector:
        asyncio.run(scenario(collector))

    lifecycle = [(k, bd_seq(p)) for k, _, p in messages(collector) if k in (T.NBIRTH, T.NDEATH)]
    (_, first), _, (_, second), _ = lifecycle
    assert [k for k, _ in lifecycle] == [T.NBIRTH, T.NDEATH, T.NBIRTH, T.NDEATH]
    assert lifecycle[1][1] == first, "the will's bdSeq is not the birth's"
    assert second == (first + 1) % 256, "bdSeq did not go on across the restart"
    assert lifecycle[3][1] == second
