"""The ``zayton`` command: one entry point, a subcommand per service and tool."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
from pydantic import ValidationError

from api.app import ApiSettings
from api.auth import create_account, create_key
from api.business import import_file as import_business
from api.coefficients import DEFAULTS as DEFAULT_COEFFICIENTS
from api.coefficients import load_into, seed_defaults
from api.monitoring.config import load_settings as load_monitoring_settings
from api.monitoring.service import Monitor
from api.plan import DEFAULTS as DEFAULT_PLAN
from api.plan import load_into as load_plan_into
from api.plan import seed_defaults as seed_plan
from api.registry import import_file as import_registry
from dashboards import LIVE
from gateway.config import Device, DeviceSection, load_config
from gateway.service import run_gateway
from gateway.tools import candidates, probe, read_once, suggestion
from ingest.migrate import Storage, migrate
from ingest.service import IngestSettings, run_ingester
from profiles.files import ConfigError, describe
from zayton import simulate
from zayton.demo import DemoOptions, run_demo
from zayton.services import bind, report_user_errors, run_until_signalled, serve_api

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"

log = logging.getLogger("zayton")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _database_arg(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--database-url",
        default=_env("ZAYTON_DATABASE_URL"),
        required=required and not _env("ZAYTON_DATABASE_URL"),
        help="PostgreSQL DSN, e.g. postgresql://user@host:5432/zayton (env ZAYTON_DATABASE_URL)",
    )


def _mqtt_arg(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MQTT_URL) -> None:
    parser.add_argument(
        "--mqtt-url",
        default=_env("ZAYTON_MQTT_URL", default),
        help="broker URL, mqtt://[user:pass@]host[:port] or mqtts://… (env ZAYTON_MQTT_URL)",
    )


def _gateway_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = commands.add_parser("gateway", help="the edge gateway").add_subparsers(
        dest="gateway_command", required=True, metavar="ACTION"
    )
    gateway_run = gateway.add_parser(
        "run",
        help="poll the devices of a config file and publish to MQTT",
        description="Poll every device of CONFIG on its interval and publish batches of "
        "readings at QoS 1. Validate the file first with 'zayton check-config'.",
    )
    gateway_run.add_argument("config", type=Path, metavar="CONFIG")
    read_once = gateway.add_parser(
        "read-once",
        help="read one device of a config once and print its decoded values",
        description="Read every point of DEVICE exactly as 'gateway run' would and print the "
        "engineering values, units and qualities; nothing is published.",
    )
    read_once.add_argument("config", type=Path, metavar="CONFIG")
    read_once.add_argument("--device", required=True, help="device name in CONFIG")
    probe = gateway.add_parser(
        "probe",
        help="read a 32-bit value in all four word orders and suggest the plausible one",
        description="Read two registers and decode them as float32, int32 and uint32 in the "
        "word orders ABCD, CDAB, BADC and DCBA. Give the range the value must lie in (for a "
        "phase voltage, --range 180 260) and the order with a plausible value is suggested.",
    )
    probe.add_argument("--host", help="device or converter address (tcp, rtu-tcp)")
    probe.add_argument("--port", type=int, default=502)
    probe.add_argument("--serial-port", help="serial device for rtu, e.g. /dev/ttyUSB0")
    probe.add_argument("--baudrate", type=int, default=9600)
    probe.add_argument("--parity", choices=["N", "E", "O"], default="N")
    probe.add_argument("--transport", choices=["tcp", "rtu", "rtu-tcp"], default="tcp")
    probe.add_argument("--unit", type=int, default=1, help="unit id (default 1)")
    probe.add_argument("--table", choices=["holding", "input"], default="holding")
    probe.add_argument("--address", type=int, required=True, help="0-based register address")
    probe.add_argument("--scale", type=float, default=1.0, help="multiply the raw value")
    probe.add_argument(
        "--range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=(-1e7, 1e7),
        help="plausible engineering values (default -1e7 1e7)",
    )
    probe.add_argument(
        "--expect",
        type=float,
        help="the value the device shows now (on its display, say): plausible means within 2%%",
    )
    probe.add_argument("--timeout", type=float, default=1.0, help="seconds (default 1)")


def _monitoring_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    monitoring = commands.add_parser(
        "monitoring", help="upload to the provincial online-monitoring platform"
    ).add_subparsers(dest="monitoring_command", required=True, metavar="ACTION")
    run = monitoring.add_parser(
        "run",
        help="build indicator sets and upload them until stopped",
        description="Build the 15-minute, daily and monthly indicator sets of every key "
        "energy-using unit (zayton.monitoring_units), keep them in the local outbox and upload "
        "them to the endpoints of --config, retrying until each acknowledges "
        "(docs/monitoring.md).",
    )
    _database_arg(run)
    run.add_argument("--config", type=Path, required=True, help="endpoints and schedule (TOML)")
    run.add_argument("--once", action="store_true", help="one pass, then exit (1 if a unit failed)")
    check = monitoring.add_parser("check-config", help="validate a monitoring config file")
    check.add_argument("file", type=Path)


def _account_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    accounts = commands.add_parser("account", help="API accounts and keys").add_subparsers(
        dest="account_command", required=True, metavar="ACTION"
    )
    account_add = accounts.add_parser(
        "add",
        help="create or update an account",
        description="Create or update an API account. district sees every firm, park the firms "
        "of --park, firm only --firm; --editor may also write business data and budgets. The "
        "password is read from ZAYTON_PASSWORD, or asked for.",
    )
    _database_arg(account_add)
    account_add.add_argument("username")
    account_add.add_argument("--role", choices=["district", "park", "firm"], required=True)
    account_add.add_argument("--park", help="the park's code (role park)")
    account_add.add_argument("--firm", help="the firm's code (role firm)")
    account_add.add_argument("--editor", action="store_true")
    account_key = accounts.add_parser(
        "key",
        help="make an API key for a machine",
        description="Print a new API key for USERNAME (sent as the X-API-Key header). It is "
        "shown once; only its digest is kept.",
    )
    _database_arg(account_key)
    account_key.add_argument("username")
    account_key.add_argument("--name", default="machine", help="what the key is for")


def _db_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database administration").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db_migrate = db.add_parser(
        "migrate",
        help="create or upgrade the schema (idempotent)",
        description="Apply pending migrations. A new database gets TimescaleDB storage when the "
        "extension is available, native partitioning otherwise.",
    )
    _database_arg(db_migrate)
    db_migrate.add_argument("--storage", choices=["plain", "timescale"], help="force a path")
    db_coefficients = db.add_parser(
        "coefficients",
        help="load conversion and emission coefficients",
        description="Insert or update the coefficients of FILE (the format of the shipped "
        "api/data/coefficients.toml), all or nothing. 'db migrate' loads the shipped defaults "
        "into a new database.",
    )
    _database_arg(db_coefficients)
    db_coefficients.add_argument("file", type=Path, nargs="?", default=DEFAULT_COEFFICIENTS)
    db_business = db.add_parser(
        "business",
        help="import monthly business data of firms (CSV)",
        description="Insert or update each firm's monthly output value, value added (with "
        "price_basis current or comparable:<year>), tax, land area (land_area_m2 or land_mu) "
        "and headcount from FILE, a UTF-8 CSV with a header; money in 10,000 yuan. The "
        "business.csv 'zayton simulate' writes imports as is. All or nothing; empty cells "
        "leave stored values unchanged.",
    )
    _database_arg(db_business)
    db_business.add_argument("file", type=Path)
    db_plan = db.add_parser(
        "plan",
        help="replace the plan targets",
        description="Replace the working plan (zayton.targets) with the targets of FILE (the "
        "format of the shipped api/data/plan.toml), all or nothing. 'db migrate' loads the "
        "shipped plan into a new database.",
    )
    _database_arg(db_plan)
    db_plan.add_argument("file", type=Path, nargs="?", default=DEFAULT_PLAN)
    db_registry = db.add_parser(
        "registry",
        help="import the park, firms, workshops, lines and meters",
        description="Create or update the park and firms of FILE (JSON or TOML, the shape of "
        "the park.json 'zayton simulate' writes): workshops and lines, what each meter "
        "measures and its metering level, gateways with their uplink, projects. All or "
        "nothing; entities not in FILE are left alone.",
    )
    _database_arg(db_registry)
    db_registry.add_argument("file", type=Path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zayton",
        description="Industrial-IoT ingestion and energy monitoring for factories and parks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a simulated park, gateways, broker, ingester, database and API together",
        description="Bring the whole chain up on this machine. Without --database-url or "
        "--mqtt-url it starts its own PostgreSQL and MQTT broker in --data-dir, reused by the "
        "next run. Ctrl-C stops everything.",
    )
    demo.add_argument("--data-dir", type=Path, default=Path(".zayton/demo"))
    demo.add_argument("--database-url", default=_env("ZAYTON_DATABASE_URL"))
    _mqtt_arg(demo, default=None)
    demo.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument(
        "--scenario", default="licheng", help="simulated park: licheng (default), tiny or a path"
    )
    demo.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    demo.add_argument("--interval", type=float, default=5.0, help="poll interval, seconds")
    demo.add_argument(
        "--modbus-port", type=int, default=0, help="first simulated gateway's port (0 = any)"
    )
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default=_env("ZAYTON_BROKER", "auto"),
        help="embedded broker: mosquitto when installed (auto), or the pure-Python amqtt",
    )

    simulate.add_parser(commands)

    _gateway_parser(commands)

    ingest = commands.add_parser("ingest", help="the MQTT to PostgreSQL ingester").add_subparsers(
        dest="ingest_command", required=True, metavar="ACTION"
    )
    ingest_run = ingest.add_parser(
        "run",
        help="subscribe to telemetry and write it to PostgreSQL",
        description="Subscribe to every gateway's telemetry and status, store readings with "
        "binary COPY, record bad payloads as dead letters, acknowledge after commit.",
    )
    _database_arg(ingest_run)
    _mqtt_arg(ingest_run)
    ingest_run.add_argument("--topic-root", default="zayton")
    ingest_run.add_argument("--client-id", default="zayton-ingest")
    ingest_run.add_argument(
        "--share-group", help="join a shared subscription group to split load between ingesters"
    )
    ingest_run.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free)"
    )
    ingest_run.add_argument(
        "--known-devices-only",
        action="store_true",
        help="take readings only of devices a gateway announced in its status; others become "
        "dead letters (default: a device registers itself with its first reading)",
    )
    ingest_run.add_argument(
        "--keep-days",
        type=int,
        help="drop raw readings older than this many days (rollups are kept; default: keep all)",
    )

    api = commands.add_parser(
        "api",
        help="serve the HTTP API",
        description="Serve the HTTP API (OpenAPI docs at /docs) and the live dashboard at /.",
    )
    _database_arg(api)
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    _mqtt_arg(api, default=None)
    api.add_argument(
        "--anonymous-read",
        action="store_true",
        help="callers without credentials may read everything (a local demo only)",
    )
    _account_parser(commands)
    _monitoring_parser(commands)
    _db_parser(commands)

    check = commands.add_parser(
        "check-config",
        help="validate gateway config files",
        description="Load each FILE exactly as 'zayton gateway run' would, profiles and read "
        "plans included, and report every problem with its file and key.",
    )
    check.add_argument("files", type=Path, nargs="+", metavar="FILE")
    return parser


def _check_config(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as err:
            sys.stderr.write(f"{err}\n")
            failed += 1
            continue
        requests = sum(len(d.requests) for d in config.devices)
        sys.stdout.write(
            f"{path}: ok, {len(config.devices)} device(s), {requests} read request(s) per cycle\n"
        )
    return 1 if failed else 0


def _db(args: argparse.Namespace) -> int:
    if args.db_command == "business":
        if not args.file.is_file():
            raise ConfigError(f"{args.file}: no such file")
        count = import_business(args.database_url, args.file)
        sys.stdout.write(f"{count} firm-months imported from {args.file}\n")
        return 0
    if args.db_command == "registry":
        report = import_registry(args.database_url, args.file)
        sys.stdout.write(
            f"park {report.park}: {report.firms} firms, {report.workshops} workshops and lines, "
            f"{report.gateways} gateways, {report.devices} devices, {report.projects} projects\n"
        )
        return 0
    if args.db_command == "plan":
        count = load_plan_into(args.database_url, args.file)
        sys.stdout.write(f"{count} targets loaded from {args.file}\n")
        return 0
    if args.db_command == "coefficients":
        count = load_into(args.database_url, args.file)
        sys.stdout.write(f"{count} coefficients loaded from {args.file}\n")
        return 0
    storage = Storage(args.storage) if args.storage else None
    result = migrate(args.database_url, storage=storage)
    seeded = seed_defaults(args.database_url)
    targets = seed_plan(args.database_url)
    sys.stdout.write(
        f"migration {result.current} ({result.storage} storage), "
        f"{len(result.applied)} applied now"
        + (f"; {seeded} default coefficients loaded" if seeded else "")
        + (f"; {targets} default targets loaded" if targets else "")
        + "\n"
    )
    return 0


def _gateway(args: argparse.Namespace) -> int:
    if args.gateway_command == "probe":
        return _probe(args)
    config = load_config(args.config)
    if args.gateway_command == "read-once":
        return _read_once(config.device(args.device))
    return run_until_signalled(lambda stop: run_gateway(config, stop))


def _read_once(device: Device) -> int:
    rows = asyncio.run(read_once(device))
    out = sys.stdout
    out.write(f"{device.name} ({device.profile.id}), unit {device.config.unit_id}\n")
    for row in rows:
        if row.error is not None:
            out.write(f"  {row.point:<28} {row.where:<14} ERROR {row.error}\n")
            continue
        value = "-" if row.value is None else f"{row.value:.10g}"
        quality = row.quality.value if row.quality is not None else ""
        out.write(f"  {row.point:<28} {row.where:<14} {value:>14} {row.unit or '':<8} {quality}\n")
    return 1 if any(row.error for row in rows) else 0


def _probe_section(args: argparse.Namespace) -> DeviceSection:
    return DeviceSection(
        name="probe",
        profile="-",
        transport=args.transport,
        host=args.host,
        port=args.port,
        serial_port=args.serial_port,
        baudrate=args.baudrate,
        parity=args.parity,
        unit_id=args.unit,
        timeout_s=args.timeout,
    )


def _probe(args: argparse.Namespace) -> int:
    try:
        section = _probe_section(args)
    except ValidationError as err:
        raise ConfigError(describe(err, "probe options")) from None
    words = asyncio.run(probe(section, args.table, args.address))
    low, high = args.range
    if args.expect is not None:
        margin = max(abs(args.expect) * 0.02, 1e-9)
        low, high = args.expect - margin, args.expect + margin
    found = candidates(words, low=low, high=high, scale=args.scale)
    out = sys.stdout
    out.write(
        f"{args.table} {args.address}-{args.address + 1}: {' '.join(f'0x{w:04X}' for w in words)}\n"
    )
    for candidate in found:
        mark = "  plausible" if candidate.plausible else ""
        out.write(
            f"  {candidate.type.value:<8} {candidate.order.value}  {candidate.value:>16.6g}{mark}\n"
        )
    best = suggestion(found)
    if best is None:
        out.write(
            f"no single word order gives a value in [{low:g}, {high:g}]: narrow --range, or "
            "probe a register whose value you know\n"
        )
        return 1
    types = ", ".join(c.type.value for c in found if c.plausible)
    out.write(f'suggested: word_order = "{best.order.value}" ({types})\n')
    return 0


def _ingest(args: argparse.Namespace) -> int:
    settings = IngestSettings(
        database_url=args.database_url,
        mqtt_url=args.mqtt_url,
        topic_root=args.topic_root,
        client_id=args.client_id,
        share_group=args.share_group,
        auto_register=not args.known_devices_only,
        metrics_port=args.metrics_port,
        keep_days=args.keep_days,
    )
    return run_until_signalled(lambda stop: run_ingester(settings, stop))


def _account(args: argparse.Namespace) -> int:
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        if args.account_command == "key":
            sys.stdout.write(create_key(conn, args.username, args.name) + "\n")
            return 0
        password = os.environ.get("ZAYTON_PASSWORD") or getpass.getpass(
            f"password for {args.username}: "
        )
        create_account(
            conn,
            args.username,
            args.role,
            password=password,
            park=args.park,
            firm=args.firm,
            editor=args.editor,
        )
    sys.stdout.write(f"account {args.username} ({args.role}) saved\n")
    return 0


def _monitoring(args: argparse.Namespace) -> int:
    if args.monitoring_command == "check-config":
        settings = load_monitoring_settings(args.file)
        sys.stdout.write(f"{args.file}: ok, {len(settings.endpoints)} endpoint(s)\n")
        return 0
    monitor = Monitor(args.database_url, load_monitoring_settings(args.config))
    if args.once:
        summary = monitor.run_once()
        sys.stdout.write(f"{summary.built} set(s) built, {summary.purged} purged\n")
        return 1 if summary.failed_units else 0
    return run_until_signalled(monitor.serve)


def _api(args: argparse.Namespace) -> int:
    settings = ApiSettings(
        database_url=args.database_url,
        dashboard_dir=LIVE,
        anonymous="district" if args.anonymous_read else None,
        mqtt_url=args.mqtt_url,
    )
    sock = bind(args.host, args.port)
    return run_until_signalled(lambda stop: serve_api(settings, sock, stop))


def _demo(args: argparse.Namespace) -> int:
    options = DemoOptions(
        data_dir=args.data_dir,
        database_url=args.database_url,
        mqtt_url=args.mqtt_url,
        host=args.host,
        port=args.port,
        scenario=args.scenario,
        speed=args.speed,
        interval_s=args.interval,
        modbus_port=args.modbus_port,
        broker=args.broker,
    )
    return run_until_signalled(lambda stop: run_demo(options, stop))


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check-config": _check_config,
    "db": _db,
    "simulate": simulate.run,
    "gateway": _gateway,
    "ingest": _ingest,
    "api": _api,
    "account": _account,
    "monitoring": _monitoring,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its errors are reported by ours
    return report_user_errors(lambda: HANDLERS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
