"""``zayton simulate``: serve a simulated park, backfill its history, load-test, inject faults."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from profiles.files import ConfigError
from simulators.backfill import backfill
from simulators.control import create_control_app
from simulators.faults import FAULT_TYPES, Fault, parse_fault
from simulators.loadgen import LoadPlan, generate
from simulators.park import Park
from simulators.progress import Progress
from simulators.scenario import Scenario, load_scenario, scenario_library
from simulators.serve import ParkSimulator, SimClock, parse_start
from simulators.truth import Truth
from wire.broker import BrokerSettings
from wire.mqtt import Publisher
from zayton.services import ServiceError, bind, run_until_signalled, serve_asgi

log = logging.getLogger(__name__)

DEFAULT_CONTROL = "http://127.0.0.1:8021"
FAULT_HELP = """faults (--fault DEVICE:TYPE[:KEY=VALUE,...]; at run time 'zayton simulate fault'):
  wrap         counter put just below its wrap: before=5 (units), modulus=register|decimal
  reset        counters restart from zero
  replace      new meter: new serial, counters from start=0 (serial=N to choose it)
  zero         next reads=1 reads of each point answer 0 (points=a;b to choose)
  nan          next reads=1 reads of each float point answer NaN
  slow         every reply delay_s=2 seconds late
  silent       no reply at all
  exception    every request answered with Modbus exception code=4
  word_order   multi-register values served in order=CDAB
  clock_drift  device clock steps offset_s=0 and gains ppm=0 per second
  every fault: at=ISO-TIME (simulated), duration_s=N (simulated seconds)
devices are named FIRM/DEVICE, e.g. tiny-shoes/incomer ('zayton simulate devices' lists them)

speeds: --speed 1 is real time; --speed 144 runs a simulated day in 10 minutes;
'zayton simulate backfill' makes history (a year of 15-minute data) as fast as it can."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="simulate a whole industrial park over Modbus TCP (and backfill, load, faults)",
        description="Serve every device of a park scenario over Modbus TCP: one port per "
        "gateway, its devices as unit ids 1..n. Loads follow sectors, shifts, weekends and "
        "holidays; PV follows the sun over Quanzhou; every counter is the exact integral of "
        "the power or flow its device reports. Shipped scenarios: " + ", ".join(scenario_library()),
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _scenario_args(simulate)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument(
        "--base-port", type=int, default=5020, help="first gateway's port (default 5020; 0: any)"
    )
    simulate.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    simulate.add_argument("--tick", type=float, default=1.0, help="physics update, real seconds")
    simulate.add_argument(
        "--control-port", type=int, default=8021, help="fault-control HTTP API port (0: off)"
    )
    simulate.add_argument(
        "--fault", action="append", default=[], metavar="DEVICE:TYPE[:K=V,...]", help="inject"
    )
    simulate.add_argument("--truth-dir", type=Path, help="write ground truth files here")
    simulate.add_argument("--truth-interval", type=float, default=900.0, help="seconds")
    simulate.add_argument(
        "--gateway-configs", type=Path, metavar="DIR", help="write a gateway config per gateway"
    )
    simulate.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883", help="for the configs")
    simulate.add_argument("--poll-interval", type=float, default=5.0, help="for the configs")
    actions = simulate.add_subparsers(dest="simulate_command", metavar="ACTION")

    history = actions.add_parser(
        "backfill",
        help="publish a park's history through the wire contract",
        description="Run the park from --start for --days at --step and publish every "
        "device's readings, as the gateway would have, to MQTT under gateway ids "
        "<gateway>-history. A progress bar shows on stderr.",
    )
    _scenario_args(history)
    history.add_argument("--days", type=float, default=7.0, help="how much history (days)")
    history.add_argument("--step", type=float, default=900.0, help="seconds between readings")
    history.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    history.add_argument("--topic-root", default="zayton")
    history.add_argument("--truth-dir", type=Path, help="write ground truth files here")
    history.add_argument("--truth-interval", type=float, default=900.0, help="seconds")
    history.add_argument("--batch", type=int, default=5000, help="readings per message")

    load = actions.add_parser(
        "loadgen",
        help="publish valid telemetry at a target rate (ingest benchmarks)",
        description="Publish wire-contract telemetry batches at --rate readings per second.",
    )
    load.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    load.add_argument("--rate", type=float, default=50_000.0, help="readings per second")
    load.add_argument("--duration", type=float, default=10.0, help="seconds")
    load.add_argument("--batch", type=int, default=500, help="readings per message")
    load.add_argument("--gateways", type=int, default=10)
    load.add_argument("--devices-per-gateway", type=int, default=20)
    load.add_argument("--points-per-device", type=int, default=10)
    load.add_argument("--topic-root", default="zayton")
    load.add_argument("--site", default="loadgen")
    load.add_argument("--client-id", default="zayton-loadgen")
    load.add_argument("--max-in-flight", type=int, default=200, help="unacknowledged messages")
    load.add_argument("--seq-start", type=int, default=1, help="first sequence number")

    fault = actions.add_parser(
        "fault",
        help="inject a fault into a running simulator",
        description="Inject a fault through the control API of a running 'zayton simulate'.",
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fault.add_argument("device", help="FIRM/DEVICE")
    fault.add_argument("type", choices=FAULT_TYPES)
    fault.add_argument("options", nargs="*", metavar="KEY=VALUE")
    fault.add_argument("--control", default=DEFAULT_CONTROL)
    clear = actions.add_parser("clear", help="end an injected fault")
    clear.add_argument("id", type=int)
    clear.add_argument("--control", default=DEFAULT_CONTROL)
    for name, text in (("faults", "list injected faults"), ("devices", "list devices")):
        listing = actions.add_parser(name, help=text)
        listing.add_argument("--control", default=DEFAULT_CONTROL)


def _scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="tiny", help="name or TOML path (default tiny)")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument(
        "--start", help="simulated start, ISO date or time (UTC+8 if no zone; default now)"
    )
    parser.add_argument("--replicate", type=int, default=1, help="copies of the park (scale)")


def _scenario(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        park = scenario.park.model_copy(update={"seed": args.seed})
        scenario = scenario.model_copy(update={"park": park})
    if args.replicate < 1:
        raise ConfigError("--replicate must be at least 1")
    return scenario.replicated(args.replicate)


def parse_fault_option(text: str) -> tuple[str, Fault]:
    """``DEVICE:TYPE[:KEY=VALUE,...]`` as given to ``--fault``."""
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise ConfigError(f"--fault {text!r}: expected DEVICE:TYPE[:KEY=VALUE,...]")
    options = parts[2].split(",") if len(parts) == 3 and parts[2] else []
    return parts[0], fault_from(parts[1], options)


def fault_from(kind: str, options: list[str]) -> Fault:
    data: dict[str, object] = {"type": kind}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise ConfigError(f"fault option {option!r}: expected KEY=VALUE")
        data[key] = value.split(";") if key == "points" else _value(value)
    try:
        return parse_fault(data)
    except ValueError as err:
        raise ConfigError(f"fault {kind}: {err}") from None


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(args: argparse.Namespace) -> int:
    """Dispatch ``zayton simulate`` and its actions."""
    until = run_until_signalled
    match args.simulate_command:
        case None:
            return until(lambda stop: serve(args, stop))
        case "backfill":
            return until(lambda stop: history(args, stop))
        case "loadgen":
            return until(lambda stop: loadgen(args, stop))
        case _:
            return control_client(args)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    scenario = _scenario(args)
    faults = [parse_fault_option(text) for text in args.fault]
    clock = SimClock(parse_start(args.start), args.speed)
    control = bind(args.host, args.control_port) if args.control_port else None
    simulator = ParkSimulator(
        scenario,
        host=args.host,
        base_port=args.base_port,
        clock=clock,
        tick_s=args.tick,
        truth_dir=args.truth_dir,
        truth_interval_s=args.truth_interval,
    )
    for device, fault in faults:
        try:
            simulator.park.inject(device, fault)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"--fault {device}: {err}") from None
    try:
        async with simulator:
            if args.gateway_configs is not None:
                paths = simulator.gateway_configs(
                    args.gateway_configs, mqtt_url=args.mqtt_url, interval_s=args.poll_interval
                )
                log.info("wrote %d gateway configs in %s", len(paths), args.gateway_configs)
            sys.stdout.write(_banner(simulator, control))
            sys.stdout.flush()
            if control is None:
                await stop.wait()
            else:
                await serve_asgi(create_control_app(simulator), control, stop)
    except OSError as err:
        raise ServiceError(f"cannot serve Modbus on {args.host}: {err.strerror}") from None


def _banner(simulator: ParkSimulator, control: object) -> str:
    park = simulator.park
    ports = simulator.ports
    lines = [
        f"\nPark {park.scenario.park.id}: {len(park.firms)} firms, {len(park.devices)} devices, "
        f"{len(ports)} gateways, {simulator.clock.speed:g}x real time\n"
    ]
    for gateway, port in list(ports.items())[:8]:
        count = len(park.gateways[gateway].devices)
        lines.append(f"  {gateway}: {simulator.host}:{port}, unit ids 1-{count}\n")
    if len(ports) > 8:
        lines.append(f"  ... and {len(ports) - 8} more gateways\n")
    if control is not None:
        lines.append("  fault control: 'zayton simulate fault --help'\n")
    return "".join(lines) + "  Ctrl-C stops.\n\n"


async def history(args: argparse.Namespace, stop: asyncio.Event) -> None:
    scenario = _scenario(args)
    start = parse_start(args.start)
    if start is None:
        raise ConfigError("backfill needs --start (e.g. --start 2025-11-01)")
    if args.days <= 0 or args.step <= 0:
        raise ConfigError("--days and --step must be positive")
    park = Park(scenario, start=start, step_s=args.step)
    end = start + args.days * 86_400
    steps = int(args.days * 86_400 // args.step) + 1
    log.info(
        "backfilling %s: %d devices, %d steps of %g s",
        scenario.park.id,
        len(park.devices),
        steps,
        args.step,
    )
    settings = BrokerSettings.from_url(args.mqtt_url)
    truth = (
        Truth(park, args.truth_dir, interval_s=args.truth_interval)
        if args.truth_dir
        else contextlib.nullcontext()
    )
    async with Publisher(settings, client_id="zayton-backfill", max_in_flight=100) as publisher:
        with truth:
            report = await backfill(
                park,
                publisher.send,
                end=end,
                topic_root=args.topic_root,
                batch_readings=args.batch,
                progress=Progress(end - start, label="backfill"),
            )
        await publisher.drain()
    sys.stdout.write(
        f"backfill: {report.steps:,} steps, {report.readings:,} readings in "
        f"{report.messages:,} messages, {report.elapsed_s:.1f} s "
        f"({report.readings_per_s:,.0f} readings/s)\n"
    )


async def loadgen(args: argparse.Namespace, stop: asyncio.Event) -> None:
    try:
        plan = LoadPlan(
            rate=args.rate,
            duration_s=args.duration,
            readings_per_message=args.batch,
            gateways=args.gateways,
            devices_per_gateway=args.devices_per_gateway,
            points_per_device=args.points_per_device,
            topic_root=args.topic_root,
            site=args.site,
            client_id=args.client_id,
            max_in_flight=args.max_in_flight,
            seq_start=args.seq_start,
        )
    except ValueError as err:
        raise ConfigError(f"loadgen: {err}") from None
    report = await generate(BrokerSettings.from_url(args.mqtt_url), plan, stop)
    sys.stdout.write(
        f"loadgen: {report.readings:,} readings in {report.messages:,} messages, "
        f"{report.elapsed_s:.1f} s, {report.readings_per_s:,.0f} readings/s, "
        f"{report.acknowledged:,} messages acknowledged\n"
    )
    if report.acknowledged != report.messages:
        raise ServiceError(f"{report.messages - report.acknowledged} message(s) unacknowledged")


def control_client(args: argparse.Namespace) -> int:
    base = args.control.rstrip("/")
    match args.simulate_command:
        case "fault":
            fault = fault_from(args.type, args.options)
            body = {"device": args.device, "fault": fault.model_dump(mode="json")}
            result = _call("POST", f"{base}/faults", body)
        case "clear":
            result = _call("DELETE", f"{base}/faults/{args.id}")
        case "faults":
            result = _call("GET", f"{base}/faults")
        case _:
            result = _call("GET", f"{base}/devices")
    sys.stdout.write(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return 0


def _call(method: str, url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the user names the control URL
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = json.loads(err.read() or b"{}").get("detail", err.reason)
        raise ServiceError(f"{method} {url}: {err.code} {detail}") from None
    except urllib.error.URLError as err:
        raise ServiceError(f"no simulator control API at {url}: {err.reason}") from None
