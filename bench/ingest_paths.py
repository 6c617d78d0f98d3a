"""`python -m bench.ingest_paths [--quick]`: the new ways in (SenML JSON and CBOR by
RFC 8428, the HTTP intake) beside the native path, on the same machine in the same run.

- pipeline: `ingest.pipeline.Pipeline.handle` in-process (decode, validate, budget,
  line protocol), the CPU cost of each payload form without broker or InfluxDB
- HTTP end to end: a real ingest (LocalStack's mosquitto and influxd, the durable
  spool) with its HTTP intake; keep-alive clients POST until InfluxDB counts every reading

Short by design (the machine is shared): the load average is printed before and after.
The budget is off (rate_limit_factor 0): it would shed a benchmark, not measure it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import httpx

from ingest.http import HttpIntake
from ingest.pipeline import Pipeline
from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.wire import SENML_CBOR_CONTENT_TYPE, SENML_CONTENT_TYPE

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACK = 50  # readings per SenML pack, as bench.ingest's SenML case
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

Body = tuple[bytes, str]  # payload, content type


def native(device: str, i: int) -> Body:
    when = (START + timedelta(seconds=i)).isoformat()
    body = {"device": device, "time": when, "readings": [{"metric": "water_level", "value": 100.0}]}
    return json.dumps(body).encode(), "application/json"


def senml_records(device: str, i: int) -> list[dict[str, object]]:
    t0 = START.timestamp() + i * PACK
    return [{"bn": f"{device}/", "bt": t0, "bu": "cm", "n": "water_level", "v": 100.0}] + [
        {"n": "water_level", "v": 100.0 + k / 10, "t": k} for k in range(1, PACK)
    ]


def senml_json(device: str, i: int) -> Body:
    return json.dumps(senml_records(device, i)).encode(), SENML_CONTENT_TYPE


def senml_cbor(device: str, i: int) -> Body:
    labels = {"bn": -2, "bt": -3, "bu": -4, "n": 0, "v": 2, "t": 6}
    pack = [{labels[k]: v for k, v in r.items()} for r in senml_records(device, i)]
    return cbor2.dumps(pack), SENML_CBOR_CONTENT_TYPE


FORMS: dict[str, tuple[Callable[[str, int], Body], int]] = {
    "native JSON, 1 reading/msg": (native, 1),
    f"SenML JSON, {PACK} readings/pack": (senml_json, PACK),
    f"SenML CBOR, {PACK} readings/pack": (senml_cbor, PACK),
}


def pipeline_case(
    city: City, devices: list[str], make: Callable[[str, int], Body], n: int
) -> float:
    """Messages/s through Pipeline.handle; fails on any rejection."""
    topics = Topics("bench")
    pipeline = Pipeline(city, topics, IngestSettings(rate_limit_factor=0, max_age_s=30 * 86400))
    bodies = [(topics.sensor_up(d), *make(d, i)) for i in range(n // len(devices)) for d in devices]
    now = datetime.now(UTC)
    started = time.perf_counter()
    for topic, payload, ctype in bodies:
        out = pipeline.handle(topic, payload, ctype, now)
        if out.rejections:
            raise SystemExit(f"rejected: {out.rejections[0].reason} {out.rejections[0].detail}")
    return len(bodies) / (time.perf_counter() - started)


def http_case(
    stack: LocalStack, city: City, devices: list[str], form: str, requests: int, clients: int
) -> tuple[float, int]:
    """Requests/s end to end (POST to InfluxDB count), and readings stored."""
    make, per = FORMS[form]
    root, db = f"b{uuid.uuid4().hex[:8]}", f"bench_{uuid.uuid4().hex[:8]}"
    stack.create_database(db)
    settings = stack.settings(database=db, root=root)
    spool = Path(tempfile.mkdtemp(prefix="pantau-bench-spool-"))
    settings.ingest = IngestSettings(
        rate_limit_factor=0,
        max_age_s=30 * 86400,
        spool_dir=spool,
        http_tokens=spool / "tokens.json",
        client_id=f"bench-{root}",
    )
    service = IngestService(settings, city, make_writer(settings.influx))
    port = free_port()
    intake = HttpIntake(service, settings.ingest, port)
    service.start()
    service.wait_subscribed(10)
    intake.start()
    tokens = {d: intake.tokens.rotate(d) for d in devices}
    per_client = requests // clients
    errors: list[str] = []

    def client(c: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for i in range(per_client):
                d = devices[(c + i * clients) % len(devices)]
                payload, ctype = make(d, c * per_client + i)
                r = http.post(
                    f"/ingest/{d}",
                    content=payload,
                    headers={"Authorization": f"Bearer {tokens[d]}", "Content-Type": ctype},
                )
                if r.status_code != 200 or r.json()["rejected"]:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    return

    expected = per_client * clients * per
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = time.perf_counter() - started
    with InfluxQL.from_settings(settings.influx) as influx:
        while True:
            rows = influx.rows("SELECT count(value) FROM water_level")
            if errors or (rows and int(str(rows[0]["count"])) >= expected):
                break
            time.sleep(0.1)
    stored_s = time.perf_counter() - started
    intake.stop()
    service.stop()
    stack.drop_database(db)
    if errors:
        raise SystemExit(f"HTTP case {form}: {errors[0]}")
    print(f"  answered all in {answered:.1f} s, stored all in {stored_s:.1f} s")
    return per_client * clients / stored_s, expected


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_paths")
    parser.add_argument("--quick", action="store_true", help="a smoke run, a few seconds")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    n_msgs, n_http, clients = (2_000, 300, 4) if args.quick else (10_000, 2_000, 4)
    city = load_city()
    devices = sorted(d.id for d in city.devices.values() if d.kind == "water_level_station")[:50]
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    rows = []
    for form, (make, per) in FORMS.items():
        msgs = pipeline_case(city, devices, make, n_msgs if per == 1 else n_msgs // 10)
        rows.append(("pipeline", form, msgs, msgs * per))
        print(f"pipeline  {form:<32} {msgs:>9,.0f} msg/s {msgs * per:>10,.0f} readings/s")
    with LocalStack() as stack:
        for form, (_, per) in FORMS.items():
            reqs, _ = http_case(stack, city, devices, form, n_http, clients)
            rows.append(("HTTP end to end", form, reqs, reqs * per))
            print(f"HTTP e2e  {form:<32} {reqs:>9,.0f} req/s {reqs * per:>10,.0f} readings/s")
    load_after = os.getloadavg()
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = f"ingest-paths-{datetime.now(UTC).date()}{'-quick' if args.quick else ''}.json"
        doc = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "cpus": os.cpu_count(),
            "http_clients": clients,
            "cases": [
                {"path": p, "form": f, "per_s": round(m, 1), "readings_per_s": round(r, 1)}
                for p, f, m, r in rows
            ],
        }
        (RESULTS_DIR / name).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"saved bench/results/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
