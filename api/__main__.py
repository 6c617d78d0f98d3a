"""`pantau api`: serve the API, or manage its users and service keys.

    pantau api [serve] [--host H] [--port P]
    pantau api create-user NAME --role crew --agency bpbd --kecamatan kec-karawaci \\
        --crew-id bpbd-barat-pagi          # password from PANTAU_NEW_PASSWORD or a prompt
    pantau api create-key NAME [--agency A] [--kecamatan K ...]   # prints the key once
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Sequence

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
    key = sub.add_parser("create-key", help="add a read-only service API key")
    key.add_argument("name")
    key.add_argument("--agency")
    key.add_argument("--kecamatan", nargs="*", default=None)
    return p


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
        config = uvicorn.Config(create_app(ctx), log_level="info")
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    finally:
        ctx.close()


if __name__ == "__main__":
    raise SystemExit(main())
