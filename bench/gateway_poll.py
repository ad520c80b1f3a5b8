"""Benchmark of the gateway's polling path on this machine; prints figures and goals.

    .venv/bin/python bench/gateway_poll.py [--devices 100,1000] [--seconds 10]
        [--jitter-seconds 20] [--mqtt-url mqtt://127.0.0.1:1883] [--layers] [--profile]

The simulated devices are the licheng park replicated as often as the largest fleet needs, served
by Zayton's Modbus TCP simulator in a process of its own (one port per simulated gateway, its
devices behind it as unit ids), so the CPU time measured is the poller's alone. Every measurement
runs in a fresh process, polling the first gateways of the park (whole gateways, the last one cut
to make the count) with the read plans of their library profiles:

1. Bare pymodbus: per device a task reading its plan in a loop, as fast as it can, one client
   per port shared under a lock: the floor cost of the library.
2. Gateway: the same fleet through the gateway's code path, as fast as it can: per gateway an
   outbox, links and readers (``bind_readers``), a forwarder publishing to the broker at QoS 1,
   and per device a task adding each poll to the outbox; the outbox is drained at the end and
   that CPU counted too.
3. Jitter: the gateway's own scheduler (``poll_forever``) at a 1 s interval for the largest
   fleet: how late polls start after their wall-clock tick, CPU share and resident memory.

Rates are per CPU-second of the polling process (all its threads, paho's included). With
``--layers`` the gateway path of the largest fleet is also measured cut at each layer (Link.read
alone, + decoding, + the rest of a poll, + the outbox), to show what each costs per round trip;
``--profile`` runs it once more under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import io
import logging
import math
import multiprocessing
import os
import pstats
import secrets
import sys
import tempfile
import time
from array import array
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.config import GatewayConfig, load_config
from gateway.errors import DeviceError
from gateway.outbox import Outbox
from gateway.poller import DeviceReader, poll_forever
from gateway.service import Forwarder, bind_readers, freeze_startup_objects, open_outbox
from wire.broker import BrokerSettings
from wire.mqtt import Publisher
from wire.stats import Histogram
from zayton.localservers import LocalBroker, tcp_answers

HOST = "127.0.0.1"
DEVICES_PER_COPY = 333
"""Devices of one licheng park (checked when the simulator starts)."""
WARMUP_S = 2.0
"""Jitter run: seconds of polling not counted (connections opening)."""
DRAIN_TIMEOUT_S = 30.0
PROFILE_DIRS = ("gateway/", "profiles/", "wire/")
LAYERS = {
    "link": "Link.read: lock, timeout, errors",
    "decode": "+ request.values: decoding",
    "poll": "+ rest of reader.poll: JSON, counters, health",
    "store": "+ outbox.add: SQLite commit",
    "gateway": "+ forwarder: batches, MQTT QoS 1",
}
"""The gateway path layer by layer (``--layers``), each measured on its own."""

Plan = list[tuple[int, int, int]]  # (function code, address, count) per request

log = logging.getLogger("bench.gateway_poll")


@dataclass(frozen=True)
class Job:
    """One measurement over the fleet configured in ``paths``, its outboxes under
    ``state_root``: ``bare``, ``jitter``, or the gateway path up to one of :data:`LAYERS`."""

    kind: str
    paths: list[Path]
    seconds: float
    state_root: Path
    topic_root: str
    server_pid: int
    profile: bool = False
    one_gateway: bool = True
    """All devices in one gateway; False: one gateway per simulated site, in one process."""


@dataclass
class RunResult:
    kind: str
    devices: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    main_cpu_s: float = 0.0
    """CPU of the event loop's thread (the rest: paho's network threads, SQLite, pymodbus)."""
    polls: int = 0
    round_trips: int = 0
    registers: int = 0
    errors: int = 0
    drain_s: float = 0.0
    rss_mb: float = 0.0
    peak_mb: float = 0.0
    sim_cpu_s: float = 0.0
    lags: list[float] = field(default_factory=list)
    recancelled: int = 0
    """Poll tasks that polled on after the cancellation meant to stop them."""
    profile: str = ""

    @property
    def rt_per_cpu(self) -> float:
        return self.round_trips / self.cpu_s if self.cpu_s else 0.0

    @property
    def regs_per_cpu(self) -> float:
        return self.registers / self.cpu_s if self.cpu_s else 0.0


def memory_mb() -> tuple[float, float]:
    """Resident memory of this process now and at its peak (VmRSS, VmHWM), in MB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relocated(config: GatewayConfig, state_root: Path) -> GatewayConfig:
    """The config with its state directory (the outbox) under ``state_root``."""
    return dataclasses.replace(config, path=state_root / config.path.name)


def load_fleet(
    paths: Sequence[Path], state_root: Path, *, one_gateway: bool = True
) -> list[GatewayConfig]:
    """The gateway configs of the fleet; with ``one_gateway`` merged into one gateway polling
    every device (one outbox, one MQTT connection), its devices named after their site's
    gateway so that names stay unique."""
    configs = [relocated(load_config(path), state_root) for path in paths]
    if not one_gateway or len(configs) == 1:
        return configs
    devices = tuple(
        dataclasses.replace(
            device,
            config=device.config.model_copy(update={"name": f"{c.gateway.id}-{device.name}"}),
        )
        for c in configs
        for device in c.devices
    )
    first = configs[0]
    gateway = first.gateway.model_copy(update={"id": "bench-edge"})
    return [dataclasses.replace(first, gateway=gateway, devices=devices)]


# The simulated devices, in a process of their own.


@dataclass(frozen=True)
class Park:
    """What the simulator serves, and where the gateway configs polling it are written."""

    copies: int
    fleets: list[int]
    directory: Path
    mqtt_url: str
    topic_root: str


def _serve(park: Park, conn: Connection) -> None:
    # Imported here only: the measured processes must not carry the simulator.
    from simulators.park import GatewayUnit  # noqa: PLC0415
    from simulators.scenario import load_scenario  # noqa: PLC0415
    from simulators.serve import ParkSimulator, gateway_toml  # noqa: PLC0415

    copies, fleets, directory = park.copies, park.fleets, park.directory
    mqtt_url, topic_root = park.mqtt_url, park.topic_root

    async def serve() -> None:
        simulator = ParkSimulator(load_scenario("licheng").replicated(copies), host=HOST)
        async with simulator:
            written: dict[int, list[Path]] = {}
            for size in fleets:
                folder = directory / f"fleet-{size}"
                folder.mkdir(parents=True)
                left, paths = size, []
                for gateway_id, unit in simulator.park.gateways.items():
                    if left <= 0:
                        break
                    members = dict(list(unit.devices.items())[:left])
                    left -= len(members)
                    part = GatewayUnit(unit.id, unit.firm, unit.uplink, members)
                    path = folder / f"{gateway_id}.toml"
                    port = simulator.servers[gateway_id].port
                    path.write_text(
                        gateway_toml(
                            gateway_id,
                            part,
                            HOST,
                            port,
                            mqtt_url=mqtt_url,
                            interval_s=1.0,
                            topic_root=topic_root,
                        )
                    )
                    paths.append(path)
                written[size] = paths
            conn.send((len(simulator.park.devices), list(simulator.ports.values()), written))
            with contextlib.suppress(EOFError):
                await asyncio.to_thread(conn.recv)  # anything, or the parent gone: stop

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve())


# Bare pymodbus: the floor.


async def _read(
    client: AsyncModbusTcpClient, function: int, address: int, count: int, unit: int
) -> ModbusPDU:
    match function:
        case 1:
            return await client.read_coils(address, count=count, device_id=unit)
        case 2:
            return await client.read_discrete_inputs(address, count=count, device_id=unit)
        case 3:
            return await client.read_holding_registers(address, count=count, device_id=unit)
        case _:
            return await client.read_input_registers(address, count=count, device_id=unit)


async def bare_run(job: Job) -> RunResult:
    configs = load_fleet(job.paths, job.state_root)
    devices = [device for config in configs for device in config.devices]
    buses: dict[int, tuple[AsyncModbusTcpClient, asyncio.Lock]] = {}
    for device in devices:
        port = device.config.port
        if port not in buses:
            client = AsyncModbusTcpClient(HOST, port=port, retries=0, reconnect_delay=0, timeout=2)
            if not await client.connect():
                raise RuntimeError(f"no Modbus server answers on port {port}")
            buses[port] = (client, asyncio.Lock())
    result = RunResult("bare", len(devices))

    async def device_loop(port: int, unit: int, plan: Plan, deadline: float) -> None:
        client, lock = buses[port]
        registers = sum(count for _, _, count in plan)
        while True:
            for function, address, count in plan:
                async with lock:
                    try:
                        response = await _read(client, function, address, count, unit)
                    except ModbusException:
                        result.errors += 1
                        continue
                if response.isError():
                    result.errors += 1
            result.polls += 1
            result.round_trips += len(plan)
            result.registers += registers
            if time.perf_counter() >= deadline:
                return

    plans = [
        (
            device.config.port,
            device.config.unit_id,
            [(r.function_code, r.address, r.count) for r in device.requests],
        )
        for device in devices
    ]
    # One poll of every device first: connections open, caches warm.
    await asyncio.gather(*(device_loop(p, u, plan, 0.0) for p, u, plan in plans))
    result.polls = result.round_trips = result.registers = result.errors = 0
    window = Window(job.server_pid)
    deadline = window.wall + job.seconds
    await asyncio.gather(*(device_loop(p, u, plan, deadline) for p, u, plan in plans))
    window.wall_end(result)
    window.cpu_end(result)
    for client, _ in buses.values():
        client.close()
    return result


# The gateway's code path.


@dataclass
class Gateway:
    config: GatewayConfig
    outbox: Outbox
    readers: list[DeviceReader]
    publisher: Publisher
    forwarder: Forwarder


@contextlib.asynccontextmanager
async def gateways(job: Job) -> AsyncIterator[list[Gateway]]:
    """Every gateway of the fleet bound and connected to the broker, as ``run_gateway`` does it
    (without the retained status, which would outlive the run on the broker)."""
    async with contextlib.AsyncExitStack() as stack:
        built = []
        for config in load_fleet(job.paths, job.state_root, one_gateway=job.one_gateway):
            outbox = open_outbox(config)
            stack.callback(outbox.close)
            links, readers = bind_readers(config, outbox)
            for link in links.values():
                stack.push_async_callback(link.close)
            publisher = Publisher(
                config.mqtt.broker,
                client_id=f"{job.topic_root}-{config.gateway.id}",
                max_in_flight=config.mqtt.max_in_flight,
            )
            await stack.enter_async_context(publisher)
            built.append(
                Gateway(config, outbox, readers, publisher, Forwarder(config, outbox, publisher))
            )
        async with asyncio.timeout(20):
            for gateway in built:
                await gateway.publisher.connected.wait()
        freeze_startup_objects()  # as run_gateway does
        yield built


async def stopped(tasks: Sequence[asyncio.Task[None]], timeout_s: float = 10.0) -> int:
    """Cancel ``tasks`` and wait for them to end; the number that had to be cancelled again.

    On Python 3.11 ``asyncio.wait_for`` (which pymodbus awaits every answer with) returns the
    answer and drops the cancellation when both arrive in the same turn of the loop: the task
    polls on. Cancelling again stops it."""
    pending = set(tasks)
    again: set[asyncio.Task[None]] = set()
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for task in pending:
            if task.cancelling():
                again.add(task)
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    if pending:
        log.error("%d of %d tasks did not stop within %.0f s", len(pending), len(tasks), timeout_s)
    return len(again)


def _pending(fleet: Sequence[Gateway]) -> bool:
    return any(g.outbox.batches or g.outbox.uncut_readings for g in fleet)


async def _drained(fleet: Sequence[Gateway]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            while _pending(fleet):  # noqa: ASYNC110 - an outbox has no event for "empty"
                await asyncio.sleep(0.01)


def _errors(fleet: Sequence[Gateway]) -> int:
    return sum(sum(r.health.errors.values()) for g in fleet for r in g.readers)


async def _reader_loop(
    layer: str, reader: DeviceReader, outbox: Outbox, deadline: float, result: RunResult
) -> None:
    """Poll ``reader`` as fast as it answers until ``deadline``, up to ``layer``."""
    plan, link = reader.device.requests, reader.link
    unit, timeout = reader.device.config.unit_id, reader.device.config.timeout_s
    registers = sum(r.count for r in plan)
    while True:
        if layer in ("link", "decode"):
            for request in plan:
                try:
                    words = await link.read(request, unit, timeout)
                except DeviceError:
                    result.errors += 1
                    continue
                if layer == "decode":
                    request.values(words)
        else:
            poll = await reader.poll()
            if poll.readings and layer != "poll":
                outbox.add(poll)
        result.polls += 1
        result.round_trips += len(plan)
        result.registers += registers
        if time.perf_counter() >= deadline:
            return


class Window:
    """The CPU (this process, its loop thread, the simulator) and wall time of a measurement."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.sim, self.cpu = process_cpu_s(server_pid), time.process_time()
        self.main, self.wall = time.thread_time(), time.perf_counter()

    def wall_end(self, result: RunResult) -> None:
        result.wall_s = time.perf_counter() - self.wall
        result.sim_cpu_s = process_cpu_s(self.server_pid) - self.sim

    def cpu_end(self, result: RunResult) -> None:
        result.cpu_s = time.process_time() - self.cpu
        result.main_cpu_s = time.thread_time() - self.main
        result.rss_mb, result.peak_mb = memory_mb()


async def gateway_run(job: Job) -> RunResult:
    """The gateway path up to ``job.kind``, one of :data:`LAYERS` (``gateway``: all of it)."""
    layer, publishing = job.kind, job.kind == "gateway"
    async with gateways(job) as fleet:
        result = RunResult(layer, sum(len(g.readers) for g in fleet))
        # One poll of every device first, not stored: connections open, caches warm.
        await asyncio.gather(*(r.poll() for g in fleet for r in g.readers))
        errors = _errors(fleet)
        profiler = cProfile.Profile() if job.profile else None
        window = Window(job.server_pid)
        if profiler is not None:
            profiler.enable()
        forwarders = [asyncio.create_task(g.forwarder.run()) for g in fleet if publishing]
        deadline = window.wall + job.seconds
        await asyncio.gather(
            *(_reader_loop(layer, r, g.outbox, deadline, result) for g in fleet for r in g.readers)
        )
        window.wall_end(result)
        await _drained(fleet if publishing else [])
        if profiler is not None:
            profiler.disable()
        window.cpu_end(result)
        result.drain_s = time.perf_counter() - window.wall - result.wall_s
        result.errors += _errors(fleet) - errors
        if not publishing:  # publish what was stored, outside the measurement
            forwarders = [asyncio.create_task(g.forwarder.run()) for g in fleet]
            await _drained(fleet)
        if _pending(fleet):
            result.errors += 1
            log.error("the outbox did not drain within %.0f s", DRAIN_TIMEOUT_S)
        await stopped(forwarders)
    if profiler is not None:
        result.profile = profile_report(profiler)
    return result


class LagRecorder(Histogram):
    """Keeps every lag observed for a tick from ``since`` until before ``until`` (POSIX s)."""

    def __init__(self, since: float, until: float) -> None:
        super().__init__()
        self.since, self.until = since, until
        self.values = array("d")

    def observe(self, value: float) -> None:
        if self.since <= time.time() - value < self.until:
            self.values.append(value)


async def jitter_run(job: Job) -> RunResult:
    async with gateways(job) as fleet:
        readers = [r for g in fleet for r in g.readers]
        result = RunResult("jitter", len(readers))
        ticks = max(1, round(job.seconds))  # the 1 s ticks measured
        since = math.ceil(time.time() + WARMUP_S)
        lag = LagRecorder(since, since + ticks)
        tasks = [asyncio.create_task(g.forwarder.run()) for g in fleet]
        tasks += [
            asyncio.create_task(poll_forever(r, g.outbox.add, may_poll=g.outbox.accepting, lag=lag))
            for g in fleet
            for r in g.readers
        ]
        # Half a tick early: the window holds the polls of exactly ``ticks`` ticks.
        await asyncio.sleep(since - 0.5 - time.time())
        polls = sum(r.health.polls.total() for r in readers)
        errors = _errors(fleet)
        window = Window(job.server_pid)
        await asyncio.sleep(ticks)
        window.wall_end(result)
        window.cpu_end(result)
        result.polls = sum(r.health.polls.total() for r in readers) - polls
        result.errors = _errors(fleet) - errors
        # Every device polls once a tick: a mean poll of the fleet.
        sweep = [q.count for r in readers for q in r.device.requests]
        result.round_trips = result.polls * len(sweep) // len(readers)
        result.registers = result.polls * sum(sweep) // len(readers)
        result.lags = list(lag.values)
        result.recancelled = await stopped(tasks[len(fleet) :])
        await _drained(fleet)
        await stopped(tasks[: len(fleet)])
    return result


def profile_report(profiler: cProfile.Profile, top: int = 25) -> str:
    """The functions of the project's own packages that cost the most time themselves."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    out.write("\n--- gateway/, profiles/, wire/ only ---\n")
    stats.sort_stats("tottime").print_stats("|".join(PROFILE_DIRS), top)
    out.write("\n--- by cumulative time, gateway/, profiles/, wire/ only ---\n")
    stats.sort_stats("cumulative").print_stats("|".join(PROFILE_DIRS), top)
    return out.getvalue()


# Running each measurement in a process of its own.


def _child(job: Job, conn: Connection) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    job.state_root.mkdir(parents=True, exist_ok=True)
    match job.kind:
        case "bare":
            result = asyncio.run(bare_run(job))
        case "jitter":
            result = asyncio.run(jitter_run(job))
        case _:
            result = asyncio.run(gateway_run(job))
    conn.send(result)


def measure(job: Job) -> RunResult:
    """Run ``job`` in a fresh process (spawned: nothing inherited from this one)."""
    kind = job.kind
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, sender))
    process.start()
    sender.close()
    try:
        result: RunResult = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the {kind} run failed (exit {process.exitcode})") from None
    process.join()
    return result


@contextlib.contextmanager
def broker(url: str | None, directory: Path) -> Iterator[str]:
    """The broker at ``url``, or mosquitto at 127.0.0.1:1883 when it answers, or one started."""
    if url is not None:
        yield url
        return
    default = "mqtt://127.0.0.1:1883"
    settings = BrokerSettings.from_url(default)
    if tcp_answers(settings.host, settings.port, timeout=0.5):
        yield default
        return
    with LocalBroker(directory / "broker") as local:
        yield local.url


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def print_mix(size: int, paths: list[Path]) -> None:
    devices = [d for path in paths for d in load_config(path).devices]
    requests = [r for d in devices for r in d.requests]
    counts = sorted(r.count for r in requests)
    buses = len({d.config.bus for d in devices})
    print(
        f"fleet {size:>5,}: {len(paths):>3} gateways/ports, {buses:>3} buses, "
        f"{len(requests) / len(devices):.2f} requests per poll, "
        f"{sum(counts) / len(counts):.1f} registers per request "
        f"(min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]})"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Results:
    pairs: list[tuple[RunResult, RunResult]] = field(default_factory=list)
    """(bare, gateway) per fleet size."""
    layers: list[RunResult] = field(default_factory=list)
    jitter: RunResult | None = None
    profiled: RunResult | None = None


def run_all(args: argparse.Namespace, fleets: list[int], root: Path, url: str) -> Results:
    """Start the simulator, run every measurement, stop the simulator."""
    copies = max(1, math.ceil(fleets[-1] / DEVICES_PER_COPY))
    topic_root = f"bench-{secrets.token_hex(4)}"
    context = multiprocessing.get_context("spawn")
    parent_end, server_end = context.Pipe()
    server = context.Process(
        target=_serve, args=(Park(copies, fleets, root, url, topic_root), server_end)
    )
    began = time.perf_counter()
    server.start()
    results = Results()
    try:
        try:
            devices, ports, written = parent_end.recv()
        except EOFError:
            raise SystemExit(f"the simulator failed to start (exit {server.exitcode})") from None
        if server.pid is None or not all(tcp_answers(HOST, port, timeout=1.0) for port in ports):
            raise SystemExit("the simulator's ports do not answer")
        if devices < fleets[-1]:
            raise SystemExit(f"licheng x{copies} has {devices} devices, fewer than {fleets[-1]}")
        print(
            f"# simulator: licheng x{copies}, {devices:,} devices on {len(ports)} ports in "
            f"process {server.pid} (up in {time.perf_counter() - began:.1f} s); "
            f"broker {url}, topic root {topic_root}"
        )
        for size in fleets:
            print_mix(size, written[size])
        for size in fleets:
            base = Job(
                "bare",
                written[size],
                args.seconds,
                root,
                topic_root,
                server.pid,
                one_gateway=not args.site_gateways,
            )
            bare = measure(dataclasses.replace(base, state_root=root / f"bare-{size}"))
            job = dataclasses.replace(base, kind="gateway", state_root=root / f"gateway-{size}")
            results.pairs.append((bare, measure(job)))
        base = Job(
            "bare",
            written[fleets[-1]],
            args.seconds,
            root,
            topic_root,
            server.pid,
            one_gateway=not args.site_gateways,
        )
        if args.layers:
            for layer in list(LAYERS)[:-1]:
                job = dataclasses.replace(base, kind=layer, state_root=root / f"layer-{layer}")
                results.layers.append(measure(job))
        if args.profile:  # a run of its own: the profiler slows what it watches
            job = dataclasses.replace(
                base, kind="gateway", state_root=root / "profiled", profile=True
            )
            results.profiled = measure(job)
        job = dataclasses.replace(
            base, kind="jitter", seconds=args.jitter_seconds, state_root=root / "jitter"
        )
        results.jitter = measure(job)
    finally:
        parent_end.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()
            server.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="100,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each rate run")
    parser.add_argument("--jitter-seconds", type=float, default=20.0)
    parser.add_argument("--mqtt-url", default=None, help="default: 127.0.0.1:1883 or one started")
    parser.add_argument(
        "--site-gateways",
        action="store_true",
        help="one gateway (outbox, MQTT connection) per simulated site, all in one process, "
        "instead of one gateway polling the whole fleet",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the gateway path of the largest fleet under cProfile",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="also measure the gateway path layer by layer for the largest fleet",
    )
    args = parser.parse_args()
    fleets = sorted({int(n) for n in args.devices.split(",")})
    print(f"# gateway polling on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with (
        tempfile.TemporaryDirectory(prefix="zayton-bench-") as tmp,
        broker(args.mqtt_url, Path(tmp)) as url,
    ):
        results = run_all(args, fleets, Path(tmp), url)
    report(results)


def us_per_rt(run: RunResult) -> float:
    return run.cpu_s / run.round_trips * 1e6 if run.round_trips else math.nan


def report(results: Results) -> None:
    print()
    print(
        f"{'run':<8} {'devices':>7} {'wall s':>6} {'CPU s':>6} {'CPU/wall':>8} {'rt/s wall':>9} "
        f"{'rt/CPU-s':>9} {'regs/CPU-s':>10} {'us/rt':>6} {'loop thr':>8} {'errors':>6} "
        f"{'sim CPU':>7} {'RSS MB':>6}"
    )
    for r in [run for pair in results.pairs for run in pair] + results.layers:
        # A layer below the forwarder keeps every poll it stores: its memory is not a gateway's.
        memory = f"{r.rss_mb:>6.0f}" if r.kind in ("bare", "gateway") else f"{'-':>6}"
        print(
            f"{r.kind:<8} {r.devices:>7,} {r.wall_s:>6.1f} {r.cpu_s:>6.2f} "
            f"{r.cpu_s / r.wall_s:>8.0%} {r.round_trips / r.wall_s:>9,.0f} "
            f"{r.rt_per_cpu:>9,.0f} {r.regs_per_cpu:>10,.0f} {us_per_rt(r):>6.1f} "
            f"{r.main_cpu_s / r.cpu_s:>8.0%} {r.errors:>6,} "
            f"{r.sim_cpu_s / r.wall_s:>7.0%} {memory}"
        )
    print(
        "(rt: Modbus round trips; us/rt: CPU microseconds per round trip; loop thr: share of the "
        "CPU in the event loop's thread; sim CPU: the simulator's, of one core)"
    )
    bare, full = results.pairs[-1]
    if results.layers:
        print()
        print(f"the gateway path layer by layer, {full.devices:,} devices (CPU us per round trip):")
        previous = us_per_rt(bare)
        print(f"  {'bare pymodbus':<52} {previous:6.1f}")
        for run in [*results.layers, full]:
            cost = us_per_rt(run)
            print(
                f"  {run.kind + ': ' + LAYERS[run.kind]:<52} {cost:6.1f}  {cost - previous:+6.1f}"
            )
            previous = cost
    jitter = results.jitter
    if jitter is not None:
        print()
        lags, ticks = jitter.lags, jitter.devices * round(jitter.wall_s)
        print(
            f"jitter, {jitter.devices:,} devices at 1 s for {jitter.wall_s:.0f} s: "
            f"{len(lags):,} poll starts, {jitter.polls / ticks:.1%} "
            f"of ticks polled, {jitter.errors} errors, CPU {jitter.cpu_s / jitter.wall_s:.1%} of a "
            f"core, RSS {jitter.rss_mb:.0f} MB (peak {jitter.peak_mb:.0f} MB)"
        )
        if lags:
            print(
                f"  start lag p50 {percentile(lags, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
            )
        if jitter.recancelled:
            print(f"  {jitter.recancelled} poll task(s) polled on after their first cancellation")
    rss = max(full.peak_mb, jitter.peak_mb if jitter else 0.0)
    print()
    print("goals:")
    for bare, gw in results.pairs:
        ratio = gw.regs_per_cpu / bare.regs_per_cpu
        goal = f"gateway >= 70% of bare, {gw.devices:,} devices"
        print(f"  {verdict(ratio >= 0.7)}  {goal}: {ratio:.0%}")
    for _, gw in results.pairs:
        print(
            f"  {verdict(gw.regs_per_cpu >= 100_000)}  >= 100,000 registers/s per core, "
            f"{gw.devices:,} devices: {gw.regs_per_cpu:,.0f}"
        )
    print(
        f"  {verdict(rss < 100)}  < 100 MB resident with {full.devices:,} devices: "
        f"{rss:.0f} MB (peak of the rate and jitter runs)"
    )
    if results.profiled is not None:
        run = results.profiled
        print()
        print(
            f"profile of an extra gateway run, {run.devices:,} devices (cProfile, the event loop's "
            f"thread; {us_per_rt(run):.0f} us CPU per round trip under the profiler):"
        )
        print(run.profile)
    ratios = ", ".join(
        f"{gw.devices:,} devices {gw.regs_per_cpu / bare.regs_per_cpu:.2f}"
        for bare, gw in results.pairs
    )
    print()
    print(f"ratios gateway/bare (registers per CPU-second): {ratios}")


if __name__ == "__main__":
    main()
