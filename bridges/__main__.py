"""`pantau bridge`: device bridges from other protocols' brokers into Pantau.

pantau bridge lorawan [--config FILE]     # a LoRaWAN network server (config/lorawan.yaml)
pantau bridge sparkplug [--config FILE]   # Sparkplug B edge nodes (config/sparkplug.yaml)

Each runs until SIGTERM / Ctrl-C; readings go to Pantau's broker, where ingest stores
them and the rules judge them (docs/connect-a-device.md).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from bridges.lorawan import LorawanTranslator, load_lorawan
from bridges.relay import Relay, Translator
from bridges.source import SourceBroker, SourceConsumer
from bridges.sparkplug import SparkplugTranslator, host_presence, load_sparkplug
from pantau.city import load_city
from pantau.clock import SystemClock
from pantau.influx.writers import make_writer
from pantau.lifecycle import run_until_signalled
from pantau.settings import Settings
from pantau.topics import Topics

log = logging.getLogger("bridges")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pantau bridge",
        description="Relay a LoRaWAN network server's uplinks or Sparkplug B edge nodes "
        "into Pantau's device topics. Pantau's broker and InfluxDB come from PANTAU_*.",
    )
    parser.add_argument("protocol", choices=["lorawan", "sparkplug"])
    parser.add_argument("--config", type=Path, help="default: <config_dir>/<protocol>.yaml")
    args = parser.parse_args(argv)
    settings = Settings()
    city = load_city(settings.config_dir)
    relay = build(args.protocol, args.config, settings)
    run_until_signalled(
        relay,
        started=lambda: log.info(
            "bridge %s: %d devices -> MQTT %s:%d root %r",
            args.protocol,
            len(city.devices),
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.root,
        ),
    )
    log.info("stopped: %s", relay.stats)
    return 0


def build(protocol: str, config: Path | None, settings: Settings) -> Relay:
    """The bridge for `protocol`, configured from `config` (tests build theirs here too)."""
    city = load_city(settings.config_dir)
    topics = Topics(settings.mqtt.root)
    path = config or settings.config_dir / f"{protocol}.yaml"
    translator: Translator
    broker: SourceBroker
    clock = SystemClock()
    presence = None
    if protocol == "lorawan":
        lorawan = load_lorawan(path, city)
        translator = LorawanTranslator(lorawan, city, topics)
        broker = lorawan.network_server.broker
    else:
        sparkplug = load_sparkplug(path, city)
        translator = SparkplugTranslator(sparkplug, city, topics)
        broker = sparkplug.broker
        presence = host_presence(sparkplug, clock.now())
    source = SourceConsumer(broker, translator.filters, clock, dict(os.environ), presence)
    return Relay(
        source,
        translator,
        settings.mqtt,
        # With broker accounts the client id is the username (pantau-lorawan, -sparkplug).
        settings.mqtt.username or f"{broker.client_id}-out",
        make_writer(settings.influx),
    )
