"""`pantau broker`: the broker's accounts from the registry.

    pantau broker config --out DIR [--retire]   write DIR/passwd, DIR/acl, DIR/env/*.env
    pantau broker password USERNAME             a device's password, for provisioning

The secret comes from PANTAU_BROKER_SECRET. With --retire, accounts that the previous
DIR/passwd had and the registry no longer has are retired on the running broker
(PANTAU_MQTT__* settings) before the files are replaced; reload the broker afterwards
(SIGHUP; `docker compose kill -s HUP mosquitto`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pantau.broker.accounts import accounts_for
from pantau.broker.files import check_passwd, write_files, write_private
from pantau.broker.passwords import WeakSecret, check_secret, derive_password
from pantau.broker.retire import retire
from pantau.city import load_city
from pantau.settings import Settings
from pantau.topics import Topics

SECRET_ENV = "PANTAU_BROKER_SECRET"  # noqa: S105 - the variable name, not a secret


def _secret() -> str:
    try:
        return check_secret(os.environ.get(SECRET_ENV, ""))
    except WeakSecret as err:
        raise SystemExit(f"pantau broker: {SECRET_ENV}: {err}") from None


def write_service_env(directory: Path, usernames: Sequence[str], secret: str) -> None:
    """One env file per service account (mode 0600), for compose's env_file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in usernames:
        env = (
            f"PANTAU_MQTT__USERNAME={name}\nPANTAU_MQTT__PASSWORD={derive_password(secret, name)}\n"
        )
        write_private(directory / f"{name}.env", env.encode())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pantau broker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cfg = sub.add_parser("config", help="write passwd, acl and service env files")
    cfg.add_argument("--out", type=Path, required=True)
    cfg.add_argument("--retire", action="store_true", help="retire removed accounts first")
    pw = sub.add_parser("password", help="print one account's password")
    pw.add_argument("username")
    args = parser.parse_args(argv)

    secret = _secret()
    settings = Settings()
    city = load_city(settings.config_dir)
    accounts = accounts_for(city, Topics(settings.mqtt.root))
    if args.command == "password":
        if args.username not in {a.username for a in accounts}:
            print(f"pantau broker: no account {args.username!r} in the registry", file=sys.stderr)
            return 1
        print(derive_password(secret, args.username))
        return 0

    out: Path = args.out
    removed: list[str] = []
    if (out / "passwd").exists():
        removed = sorted(check_passwd(out / "passwd") - {a.username for a in accounts})
    if removed and args.retire:
        retire(removed, settings.mqtt, secret)
    write_files(out, accounts, secret)
    write_service_env(out / "env", [a.username for a in accounts if a.role == "service"], secret)
    by_role: dict[str, int] = {}
    for a in accounts:
        by_role[a.role] = by_role.get(a.role, 0) + 1
    print(f"wrote {out / 'passwd'} and {out / 'acl'}: {by_role}")
    if removed:
        verb = "retired" if args.retire else "removed (not retired: no --retire)"
        print(f"{verb}: {', '.join(removed)}")
    return 0
