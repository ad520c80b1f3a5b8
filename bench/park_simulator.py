"""Benchmark of the park simulator on this machine; prints figures, asserts nothing.

    .venv/bin/python bench/park_simulator.py [--copies 4] [--seconds 10] [--backfill-days 7]

1. Devices per process: the default park (licheng) replicated --copies times in one process,
   every gateway on its own Modbus TCP port; start-up time, resident memory and the CPU one
   physics tick costs (a tick a second is real time).
2. Register reads served per second: client processes read every device's read plan over
   pipelined raw Modbus TCP connections for --seconds; the simulator serves them with its
   physics ticking. Client and server share the machine's cores.
3. Backfill: the default park's history at 15-minute steps for --backfill-days, encoded as
   wire-contract batches (no broker: the generator's own speed), and the same for one day
   published to the MQTT broker at --mqtt-url when one answers; a year is extrapolated.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import struct
import sys
import time
from datetime import datetime, timedelta, timezone

from profiles.plan import plan_reads
from simulators.backfill import backfill
from simulators.park import Park
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from wire.broker import BrokerSettings
from wire.mqtt import Publisher

CST = timezone(timedelta(hours=8))
START = datetime(2025, 11, 3, tzinfo=CST).timestamp()
PIPELINE = 16


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Frames = list[tuple[int, list[bytes]]]  # (port, request frames for every device behind it)


def frames_for(simulator: ParkSimulator) -> Frames:
    work = []
    for gateway, unit in simulator.park.gateways.items():
        frames = []
        for unit_id, device in unit.devices.items():
            for request in plan_reads(device.profile):
                pdu = struct.pack(">BHH", request.function_code, request.address, request.count)
                frames.append(struct.pack(">HHHB", 0, 0, len(pdu) + 1, unit_id) + pdu)
        work.append((simulator.ports[gateway], frames))
    return work


async def _hammer(work: Frames, seconds: float) -> int:
    async def one(port: int, frames: list[bytes]) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done, index, deadline = 0, 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            burst = [frames[(index + k) % len(frames)] for k in range(PIPELINE)]
            index += PIPELINE
            writer.write(b"".join(burst))
            for _ in burst:
                header = await reader.readexactly(6)
                await reader.readexactly(struct.unpack(">HHH", header)[2])
                done += 1
        writer.close()
        return done

    counts = await asyncio.gather(*(one(port, frames) for port, frames in work))
    return sum(counts)


def _client(work: Frames, seconds: float, results: multiprocessing.Queue[int]) -> None:
    results.put(asyncio.run(_hammer(work, seconds)))


async def serve_and_measure(copies: int, seconds: float) -> None:
    scenario = load_scenario("licheng").replicated(copies)
    began = time.perf_counter()
    simulator = ParkSimulator(scenario, clock=SimClock(START + 10 * 3600), tick_s=1.0)
    built = time.perf_counter() - began
    async with simulator:
        ports = len(simulator.ports)
        park, ticks = simulator.park, 60
        cpu = time.process_time()
        for _ in range(ticks):  # one simulated second each, as the real-time ticker does
            park.advance(park.now + 1.0)
        tick_ms = (time.process_time() - cpu) / ticks * 1000
        print(f"devices in one process     {len(simulator.park.devices):>10,}")
        print(f"Modbus TCP ports           {ports:>10,}")
        print(f"start-up                   {built:>10.2f} s")
        print(f"resident memory            {rss_mb():>10.0f} MB")
        print(f"physics tick (CPU)         {tick_ms:>10.1f} ms per simulated second")
        work = frames_for(simulator)
        halves = [work[0::2], work[1::2]]
        results: multiprocessing.Queue[int] = multiprocessing.Queue()
        clients = [
            multiprocessing.Process(target=_client, args=(half, seconds, results))
            for half in halves
        ]
        server = simulator.servers.values()
        before_requests = sum(s.requests for s in server)
        before_registers = sum(s.registers_served for s in server)
        cpu, wall = time.process_time(), time.perf_counter()
        for client in clients:
            client.start()
        for client in clients:  # the clients run in other processes: wait without blocking
            await asyncio.to_thread(client.join)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        requests = sum(s.requests for s in server) - before_requests
        registers = sum(s.registers_served for s in server) - before_registers
        answered = sum(results.get() for _ in clients)
        print(f"read requests served       {requests / wall:>10,.0f} /s ({answered:,} answered)")
        print(f"registers served           {registers / wall:>10,.0f} /s")
        print(f"simulator CPU per request  {cpu / max(requests, 1) * 1e6:>10.1f} us")
        print(f"simulator CPU share        {cpu / wall:>10.0%} of one core")


async def measure_backfill(days: float, mqtt_url: str) -> None:
    park = Park(load_scenario("licheng"), start=START, step_s=900)

    async def discard(topic: str, payload: bytes) -> None:
        return None

    report = await backfill(park, discard, end=START + days * 86400)
    year = report.elapsed_s * 365 / days
    print(f"backfill, generator only   {report.readings_per_s:>10,.0f} readings/s")
    readings, seconds = report.readings, report.elapsed_s
    print(f"  {days:g} days of licheng      {readings:>10,} readings in {seconds:.1f} s")
    yearly = readings * 365 / days / 1e6
    print(f"  a year (extrapolated)    {year / 60:>10.1f} min, {yearly:.0f} M readings")
    settings = BrokerSettings.from_url(mqtt_url)
    park = Park(load_scenario("licheng"), start=START, step_s=900)
    try:
        async with asyncio.timeout(120):
            async with Publisher(
                settings, client_id=f"bench-{os.getpid()}", max_in_flight=100
            ) as pub:
                await asyncio.wait_for(pub.connected.wait(), 5)
                report = await backfill(park, pub.send, end=START + 86400, topic_root="bench")
                await pub.drain()
    except TimeoutError:
        print(f"backfill through MQTT      no broker answered at {mqtt_url}")
        return
    print(f"backfill through MQTT      {report.readings_per_s:>10,.0f} readings/s (one day, QoS 1)")
    print(f"  a year (extrapolated)    {report.elapsed_s * 365 / 60:>10.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the licheng park")
    parser.add_argument("--seconds", type=float, default=10.0, help="read load duration")
    parser.add_argument("--backfill-days", type=float, default=7.0)
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args()
    print(f"# park simulator on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    asyncio.run(serve_and_measure(args.copies, args.seconds))
    asyncio.run(measure_backfill(args.backfill_days, args.mqtt_url))


if __name__ == "__main__":
    main()
