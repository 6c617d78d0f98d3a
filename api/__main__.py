"""`pantau api`: serve the API, or manage its users and service keys.

    pantau api [serve] [--host H] [--port P]
    pantau api create-user NAME --role crew --agency bpbd --kecamatan kec-karawaci \\
        --crew-id bpbd-barat-pagi          # password from PANTAU_NEW_PASSWORD or a prompt
    pantau api create-key NAME [--agency A] [--kecamatan K ...]   # prints the key once
    pantau api update-user NAME [--role R] [--agency A] [--kecamatan K ...] [--crew-id C]
        [--deactivate | --activate]        # the user's tokens stop working within a minute
    pantau api revoke-sessions NAME        # log the user out everywhere (a lost phone)
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from api.app import create_app
from api.context import build_context
from api.principal import Role
from api.security import InsecureSecret
from pantau.local.ports import listening_socket
from pantau.settings import Settings

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pantau api", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the HTTP API (the default)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    user = sub.add_parser("create-user", help="add a person who logs in with a password")
    user.add_argument("username")
    user.add_argument("--role", required=True, choices=[r.value for r in Role if r != Role.SERVICE])
    user.add_argument("--agency")
    user.add_argument("--kecamatan", nargs="*", default=None)
    user.add_argument("--crew-id")
    upd = sub.add_parser("update-user", help="change a user; their tokens stop working")
    upd.add_argument("username")
    upd.add_argument("--role", choices=[r.value for r in Role if r != Role.SERVICE])
    upd.add_argument("--agency")
    upd.add_argument("--kecamatan", nargs="*", default=None)
    upd.add_argument("--crew-id")
    active = upd.add_mutually_exclusive_group()
    active.add_argument("--deactivate", dest="active", action="store_false", default=None)
    active.add_argument("--activate", dest="active", action="store_true")
    revoke = sub.add_parser("revoke-sessions", help="log a user out everywhere")
    revoke.add_argument("username")
    key = sub.add_parser("create-key", help="add a read-only service API key")
    key.add_argument("name")
    key.add_argument("--agency")
    key.add_argument("--kecamatan", nargs="*", default=None)
    return p


def server_options(host: str, port: int) -> dict[str, Any]:
    """How Pantau runs uvicorn: its proxy-header handling off (it would believe
    X-Forwarded-For from loopback); `api.trusted_proxies` decides instead
    (api.guards.ClientAddress)."""
    return {"host": host, "port": port, "proxy_headers": False, "server_header": False}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = Settings()
    try:
        ctx = build_context(settings)
    except InsecureSecret as err:
        print(f"pantau api: refusing to start: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "create-user":
            password = os.environ.get("PANTAU_NEW_PASSWORD") or getpass.getpass("password: ")
            ctx.accounts.create_user(
                args.username,
                password,
                Role(args.role),
                agency=args.agency,
                kecamatan=args.kecamatan,
                crew_id=args.crew_id,
            )
            print(f"user {args.username} ({args.role}) created")
            return 0
        if args.command == "update-user":
            changes = {
                name: getattr(args, name)
                for name in ("agency", "kecamatan", "crew_id")
                if getattr(args, name) is not None
            }
            ctx.accounts.update_user(
                args.username,
                role=Role(args.role) if args.role else None,
                active=args.active,
                **changes,
            )
            print(f"user {args.username} updated; their sessions end within a minute")
            return 0
        if args.command == "revoke-sessions":
            ctx.accounts.revoke_sessions(args.username)
            print(f"every session of {args.username} ends within a minute")
            return 0
        if args.command == "create-key":
            key = ctx.accounts.create_api_key(
                args.name, agency=args.agency, kecamatan=args.kecamatan
            )
            print(key)
            return 0
        host = getattr(args, "host", None) or settings.api.host
        port = getattr(args, "port", None) or settings.api.port
        # Bound here so a port in use ends in one line (pantau.cli), not uvicorn's log.
        sock = listening_socket(host, port, "pantau api")
        config = uvicorn.Config(create_app(ctx), **server_options(host, port), log_level="info")
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    finally:
        ctx.close()


if __name__ == "__main__":
    raise SystemExit(main())
