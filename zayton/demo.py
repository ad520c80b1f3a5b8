"""``zayton demo``: the whole chain on one machine, with embedded servers where none is given.

simulated park --Modbus TCP--> gateways --MQTT--> ingester --COPY--> PostgreSQL --> API + page
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from api.app import ApiSettings
from api.coefficients import seed_defaults
from api.plan import seed_defaults as seed_plan
from api.registry import Registry, parse, store
from dashboards import LIVE
from gateway.config import load_config
from gateway.service import run_gateway
from ingest.migrate import migrate
from ingest.service import IngestSettings, run_ingester
from simulators.scenario import load_scenario
from simulators.serve import ParkSimulator, SimClock
from simulators.truth import registry as park_registry
from zayton.localservers import LocalBroker, LocalPostgres
from zayton.services import bind, exclusive, serve_api

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    data_dir: Path
    database_url: str | None
    mqtt_url: str | None
    host: str
    port: int
    scenario: str
    speed: float
    interval_s: float
    modbus_port: int
    broker: Literal["auto", "mosquitto", "amqtt"] = "auto"


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> None:
    data = options.data_dir.absolute()
    with ExitStack() as servers:
        servers.enter_context(exclusive(data, "zayton demo"))
        api_socket = servers.enter_context(bind(options.host, options.port))
        database_url = options.database_url
        if database_url is None:
            database_url = servers.enter_context(LocalPostgres(data / "postgres")).dsn
            log.info("embedded PostgreSQL: %s (data in %s)", database_url, data / "postgres")
        mqtt_url = options.mqtt_url
        if mqtt_url is None:
            broker = servers.enter_context(LocalBroker(data / "broker", prefer=options.broker))
            mqtt_url = broker.url
            log.info("embedded %s broker: %s", broker.kind, mqtt_url)
        result = await asyncio.to_thread(migrate, database_url)
        await asyncio.to_thread(seed_defaults, database_url)
        await asyncio.to_thread(seed_plan, database_url)
        log.info("database at migration %d (%s storage)", result.current, result.storage)
        simulator = ParkSimulator(
            load_scenario(options.scenario),
            base_port=options.modbus_port,
            clock=SimClock(speed=options.speed),
        )
        # The park's registry: which meter is a site boundary, which line a PLC runs.
        registry = parse(park_registry(simulator.park), source=f"scenario {options.scenario}")
        await asyncio.to_thread(_store_registry, database_url, registry)
        async with simulator:
            paths = simulator.gateway_configs(
                data / "gateways", mqtt_url=mqtt_url, interval_s=options.interval_s
            )
            configs = [load_config(path) for path in paths]
            park = simulator.park
            url = f"http://{options.host}:{options.port}/"
            sys.stdout.write(
                f"\nZayton demo is running: park {park.scenario.park.id}, {len(park.firms)} firms, "
                f"{len(park.devices)} devices behind {len(configs)} gateways, "
                f"{options.speed:g}x real time\n"
                f"  open {url}\n"
                f"  latest readings: {url}v1/readings/latest   API docs: {url}docs\n"
                "  Ctrl-C stops everything.\n\n"
            )
            sys.stdout.flush()
            async with asyncio.TaskGroup() as group:
                for config in configs:
                    name = f"gateway {config.gateway.id}"
                    group.create_task(run_gateway(config, stop), name=name)
                group.create_task(
                    run_ingester(
                        IngestSettings(
                            database_url=database_url,
                            mqtt_url=mqtt_url,
                            client_id="zayton-ingest-demo",
                        ),
                        stop,
                    ),
                    name="ingester",
                )
                group.create_task(
                    serve_api(
                        ApiSettings(
                            database_url=database_url,
                            dashboard_dir=LIVE,
                            anonymous="district",
                            mqtt_url=mqtt_url,
                        ),
                        api_socket,
                        stop,
                    ),
                    name="api",
                )
    log.info("demo stopped")


def _store_registry(database_url: str, registry: Registry) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = store(conn, registry)
    log.info("registry: %d firms, %d devices", report.firms, report.devices)
