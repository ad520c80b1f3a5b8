"""``zayton demo``: the whole chain on one machine, with embedded servers where none is given.

simulated meters --Modbus TCP--> gateway --MQTT--> ingester --COPY--> PostgreSQL --> API + page
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from api.app import ApiSettings
from dashboards import LIVE
from gateway.config import load_config
from gateway.service import run_gateway
from ingest.migrate import migrate
from ingest.service import IngestSettings, run_ingester
from simulators.run import METER_PROFILE, MeterSimulator
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
    meters: int
    interval_s: float
    modbus_port: int
    broker: Literal["auto", "mosquitto", "amqtt"] = "auto"


def gateway_toml(mqtt_url: str, modbus_port: int, meters: int, interval_s: float) -> str:
    devices = "".join(
        f"""
[[devices]]
name = "meter-{unit}"
profile = "{METER_PROFILE}"
host = "127.0.0.1"
port = {modbus_port}
unit_id = {unit}
interval_s = {interval_s}
"""
        for unit in range(1, meters + 1)
    )
    return f"""# Written by 'zayton demo' for the simulated meters it serves.
[gateway]
id = "gw-demo"
site = "demo-factory"
firm = "Quanzhou demo textile factory"
uplink = "5g"
state_dir = "gateway-state"

[mqtt]
url = "{mqtt_url}"
batch_max_age_s = 0.5
{devices}"""


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
        log.info("database at migration %d (%s storage)", result.current, result.storage)
        async with MeterSimulator(count=options.meters, port=options.modbus_port) as simulator:
            config_path = data / "gateway.toml"
            config_path.write_text(
                gateway_toml(mqtt_url, simulator.port, options.meters, options.interval_s)
            )
            config = load_config(config_path)
            url = f"http://{options.host}:{options.port}/"
            sys.stdout.write(
                f"\nZayton demo is running: open {url}\n"
                f"  latest readings: {url}v1/readings/latest   API docs: {url}docs\n"
                "  Ctrl-C stops everything.\n\n"
            )
            sys.stdout.flush()
            async with asyncio.TaskGroup() as group:
                group.create_task(run_gateway(config, stop), name="gateway")
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
                        ApiSettings(database_url=database_url, dashboard_dir=LIVE),
                        api_socket,
                        stop,
                    ),
                    name="api",
                )
    log.info("demo stopped")
