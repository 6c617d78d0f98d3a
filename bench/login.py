"""Failed logins against memory and latency (issue 16): N parallel failed logins at the
production Argon2id cost (64 MiB, 3 passes) while a prober asks `/auth/me`; prints the
API process's peak RSS and the probe's p50/p99.

    uv run python -m bench.login [--logins 100] [--probes 200]

The server runs as `pantau api serve` would, in its own process, with loopback as a
trusted proxy so each attacker request can come from its own address (a botnet): the
login delays then never engage and every attempt reaches the hash pool, which is what
is measured. Targets: RSS < 400 MiB, /auth/me p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from pantau.local.ports import free_port

SERVER = """
import sys
from api.__main__ import server_options
from api.app import create_app
from api.context import build_context
from api.principal import Role
from pantau.settings import Settings
import uvicorn
ctx = build_context(Settings(), use_influx=False)
ctx.accounts.create_user("ops", sys.argv[2], Role.OPERATOR)
uvicorn.run(create_app(ctx), **server_options("127.0.0.1", int(sys.argv[1])),
            log_level="warning", access_log=False)
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def attack(base: str, n: int) -> dict[int, int]:
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:

        async def one(i: int) -> int:
            r = await client.post(
                "/auth/token",
                data={"username": "ops", "password": f"wrong-{i}"},
                headers={"X-Forwarded-For": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"},
            )
            return r.status_code

        codes = await asyncio.gather(*(one(i) for i in range(n)))
    return {c: codes.count(c) for c in sorted(set(codes))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--logins", type=int, default=100)
    p.add_argument("--probes", type=int, default=200, help="at least this many /auth/me")
    args = p.parse_args()
    password = secrets.token_urlsafe(16)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PANTAU_DATABASE_URL": f"sqlite:///{tmp}/pantau.db",
            "PANTAU_API__JWT_SECRET": secrets.token_urlsafe(32),
            "PANTAU_API__TRUSTED_PROXIES": '["127.0.0.1"]',
        }
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), password], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    r = httpx.post(
                        f"{base}/auth/token", data={"username": "ops", "password": password}
                    )
                    token = r.json()["access_token"]
                    break
                except (httpx.TransportError, KeyError, ValueError):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the API server did not start") from None
                    time.sleep(0.3)
            idle_rss = rss_mib(server.pid)
            peak = [idle_rss]
            latencies: list[float] = []
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mib(server.pid))
                    time.sleep(0.02)

            def probe() -> None:
                bearer = {"Authorization": f"Bearer {token}"}
                with httpx.Client(base_url=base, timeout=30) as c:
                    # Throughout the attack, at least `probes` times.
                    while not done.is_set() or len(latencies) < args.probes:
                        t0 = time.perf_counter()
                        assert c.get("/auth/me", headers=bearer).status_code == 200
                        latencies.append((time.perf_counter() - t0) * 1000)
                        time.sleep(0.02)

            threads = [threading.Thread(target=watch), threading.Thread(target=probe)]
            for t in threads:
                t.start()
            t0 = time.perf_counter()
            codes = asyncio.run(attack(base, args.logins))
            took = time.perf_counter() - t0
            done.set()
            for t in threads:
                t.join()
        finally:
            server.terminate()
            server.wait(timeout=10)
    q = statistics.quantiles(latencies, n=100)
    print(f"{args.logins} parallel failed logins (Argon2id 64 MiB, t=3): {codes} in {took:.1f} s")
    print(f"API RSS: idle {idle_rss:.0f} MiB, peak {peak[0]:.0f} MiB (target < 400)")
    print(
        f"/auth/me during the attack: {len(latencies)} probes, p50 {q[49]:.1f} ms, "
        f"p99 {q[98]:.1f} ms (target < 100)"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if peak[0] < 400 and q[98] < 100 else 1


if __name__ == "__main__":
    raise SystemExit(main())
