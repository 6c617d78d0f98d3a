"""The API server `bench.api` measures: the real app on a seeded SQLite (or PostgreSQL)
database, plus two bare endpoints for the baseline. Run as a subprocess so server and
load generator have a GIL each:

    python -m bench.api_server DATABASE_URL PORT      (PANTAU_API__JWT_SECRET in the env)
"""

from __future__ import annotations

import sys

import uvicorn

from api.__main__ import server_options
from api.app import create_app
from api.context import build_context
from pantau.settings import Settings


def main(argv: list[str]) -> int:
    database_url, port = argv[0], int(argv[1])
    ctx = build_context(Settings(database_url=database_url), use_influx=False)
    app = create_app(ctx)

    @app.get("/bench/bare", include_in_schema=False)
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/bare-sync", include_in_schema=False)
    def bare_sync() -> dict[str, bool]:
        # The same thread-pool hop our database endpoints take.
        return {"ok": True}

    uvicorn.run(app, **server_options("127.0.0.1", port), log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
