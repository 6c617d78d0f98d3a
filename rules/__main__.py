"""`pantau rules`: run the rules service until SIGTERM / Ctrl-C; SIGHUP reloads the rules.

`pantau rules backtest ...` replays stored readings through a rule file instead
(rules/backtest.py).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.influx.query import InfluxQL
from pantau.lifecycle import run_until_signalled
from pantau.settings import Settings
from pantau.zoneindex import ZoneIndex
from rules import backtest

log = logging.getLogger("rules")


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["backtest"]:
        return backtest.main(argv[1:])
    return serve(argv)


def serve(argv: Sequence[str]) -> int:
    # Imported here: the SQL store pulls in alembic, which logs at import, and the
    # backtest needs none of it.
    from pantau.roster import load_roster  # noqa: PLC0415
    from rules.replicas import ReplicatedRules  # noqa: PLC0415
    from rules.routing import Router  # noqa: PLC0415
    from rules.service import RulesService, make_store  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="pantau rules",
        description="Consume {root}/sensors/+/up and {root}/cameras/+/analysis, evaluate the "
        "rules, keep incidents in SQL and publish {root}/incidents/{zone} and "
        "{root}/alerts/crews/{crew}. Settings come "
        "from PANTAU_* environment variables (PANTAU_RULES__*, PANTAU_DATABASE_URL).",
        epilog="`pantau rules backtest --help`: what a rule file would have raised over "
        "stored readings.",
    )
    parser.parse_args(argv)
    settings = Settings()
    city = load_city(settings.config_dir)
    zones = ZoneIndex.for_city(city)
    router = Router(load_roster(city), zones)
    store = make_store(settings, zones)
    influx = InfluxQL.from_settings(settings.influx)
    cameras = load_cameras(city)
    if settings.rules.partitioned:
        replica = ReplicatedRules(
            settings, city, store, router, zones, influx=influx, cameras=cameras
        )
        run_until_signalled(
            replica,
            started=lambda: log.info(
                "rules: replica %s of %s, %d partitions, MQTT %s:%d root %r, store %s",
                settings.replica,
                settings.rules.client_id,
                len(replica.partitions),
                settings.mqtt.host,
                settings.mqtt.port,
                settings.mqtt.root,
                store.engine.url.render_as_string(hide_password=True),
            ),
        )
        store.close()
        influx.close()
        log.info("stopped: replica %s, %d escalations", settings.replica, replica.escalations)
        return 0
    service = RulesService(settings, city, store, router, zones, influx=influx, cameras=cameras)

    def started() -> None:
        log.info(
            "rules: %s, %d devices, %d cameras, MQTT %s root %r, store %s",
            service.rules_path,
            len(city.devices),
            len(cameras),
            settings.mqtt.describe(),
            settings.mqtt.root,
            store.engine.url.render_as_string(hide_password=True),
        )

    run_until_signalled(service, started=started, on_hup=service.request_reload)
    store.close()
    influx.close()
    s = service.stats
    log.info(
        "stopped: %d messages, %d readings, %d changes, %d opened, %d alerts",
        s.messages,
        s.readings,
        s.changes,
        s.opened,
        s.alerts_published,
    )
    return 0
