"""The `pantau` command: one sub-command per stage and tool.

Stages are looked up by module name when their sub-command runs, so the kernel does
not import any stage and a broken stage fails loudly when it is asked for.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from pantau.errors import ConfigError, ConfigErrors, UserError

# sub-command -> (module with `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("pantau.check_config", "validate config/ and print what it holds"),
    "ingest": ("ingest.__main__", "MQTT readings -> validation -> InfluxDB"),
    "bridge": ("bridges.__main__", "LoRaWAN network servers, Sparkplug B -> device topics"),
    "rules": ("rules.__main__", "MQTT readings -> rules -> incidents, crew alerts"),
    "vision": ("vision.__main__", "CCTV frames -> analyses (health, traffic, water depth) -> MQTT"),
    "api": ("api.__main__", "HTTP API: incidents, crew workflow, KPIs, feeds, web pages"),
    "dashboards": ("dashboards.__main__", "build Grafana dashboards as code; push to Grafana"),
    "simulate": ("simulators.__main__", "simulated sensor fleet and scenarios"),
    "broker": ("pantau.broker.__main__", "broker accounts, password file and ACL from config/"),
    "services": ("pantau.local.__main__", "start local mosquitto + influxd on free ports"),
    "audit": ("pantau.store.audit_cli", "verify the audit log's and timelines' hash chains"),
    "store": ("pantau.store.__main__", "incident store: migrate; prune past the retention"),
    "retention": ("pantau.influx.retention_cli", "InfluxDB levels: set up; downsample a span"),
    "backup": ("pantau.backup.__main__", "back up the incident store, InfluxDB, evidence"),
    "restore": ("pantau.backup.restore_cmd", "restore a backup into an empty store"),
    "demo": ("demo.run", "the whole pipeline end to end on the storm scenario"),
}


def usage() -> str:
    lines = ["usage: pantau <command> [options]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"pantau: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic announces its plugins at INFO on every start: noise to an operator (its
    # migration lines stay).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    module = importlib.import_module(COMMANDS[name][0])
    try:
        code: int = module.main(rest)
    except (ConfigError, ConfigErrors) as err:
        print(f"pantau {name}: configuration error\n{err}", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"pantau {name}: {err}", file=sys.stderr)
        return 2
    except ValidationError as err:
        if err.title != "Settings":
            raise
        # PANTAU_* variables (or .env) refused, e.g. a weak secret in production.
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))} {e['msg']}" for e in err.errors())
        print(f"pantau {name}: settings refused: {problems} (see .env.example)", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
