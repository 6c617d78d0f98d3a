"""`python -m bench.bridges [--quick]`: the device bridges' throughput beside the native
path, on the same machine in the same run.

- translate: the translator alone, in-process (a ChirpStack uplink, a Things Stack
  uplink, a Sparkplug B NDATA -> SenML pack), then translate + ingest's pipeline, beside
  the pipeline on native JSON: the CPU cost of the extra hop;
- end to end: a real ingest on a LocalStack, a second mosquitto as the network
  server's / plant's broker, the bridge between them; uplinks published at QoS 1 (the
  Sparkplug node at QoS 0, as the specification has it) until InfluxDB counts every
  reading; beside it, native JSON published straight to Pantau's broker.

Short by design (the machine is shared): the load average is printed before and after.
The budget is off (rate_limit_factor 0): it would shed a benchmark, not measure it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bridges.__main__ import build
from bridges.lorawan import LorawanTranslator, load_lorawan
from bridges.relay import Translator
from bridges.sparkplug import SparkplugTranslator, load_sparkplug
from ingest.pipeline import Pipeline
from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.local.mosquitto import Mosquitto
from pantau.local.ports import free_port
from pantau.settings import IngestSettings, MqttSettings, Settings
from pantau.sparkplug_b_pb2 import Payload
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from simulators.sparkplug_station import PumpStationNode
from testkit import netservers as ns
from testkit.mqtt import Publisher

RESULTS_DIR = Path(__file__).resolve().parent / "results"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
CONFIG = Path(__file__).resolve().parent.parent / "config"
NODE = "PS-Porisgaga-Baru"
PUMP = "ps-porisgaga-baru-001"
Message = tuple[str, bytes]


def lorawan_config(path: Path, devices: list[str], kind: str, port: int, client: str) -> Path:
    doc = yaml.safe_load((CONFIG / "lorawan.yaml").read_text())
    doc["network_server"].update(name=f"{kind}-bench", kind=kind)
    doc["network_server"]["broker"] = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": client,
        "protocol": "5" if kind == "chirpstack" else "3.1.1",
    }
    doc["devices"] = {eui(i): d for i, d in enumerate(devices)}
    path.write_text(yaml.safe_dump(doc))
    return path


def sparkplug_config(path: Path, port: int, client: str) -> Path:
    doc = yaml.safe_load((CONFIG / "sparkplug.yaml").read_text())
    doc["broker"] = {"host": "127.0.0.1", "port": port, "client_id": client}
    path.write_text(yaml.safe_dump(doc))
    return path


def eui(i: int) -> str:
    return f"0004a30b{i:08x}"


def uplinks(kind: str, devices: list[str], n: int) -> list[Message]:
    out = []
    for i in range(n):
        d = i % len(devices)
        when = START + timedelta(seconds=i)
        f_cnt = i // len(devices) + 1  # each device's counter without gaps
        if kind == "chirpstack":
            body = ns.chirpstack_up(eui(d), when, f_cnt, {"level_cm": 100.0 + d})
            out.append((ns.chirpstack_topic(eui(d), "up"), body))
        else:
            body = ns.tts_up(f"dev-{d}", eui(d), when, f_cnt, {"level_cm": 100.0 + d})
            out.append((ns.tts_topic(f"dev-{d}", "up"), body))
    return out


def ndata(n: int) -> list[Message]:
    out = []
    for i in range(n):
        p = Payload(timestamp=int((START + timedelta(seconds=i)).timestamp() * 1000), seq=i % 256)
        p.metrics.add(alias=3, double_value=1.0 + (i % 100) / 100)
        out.append((f"spBv1.0/Drainage/NDATA/{NODE}", p.SerializeToString()))
    return out


def translate_case(
    translator: Translator, messages: list[Message], pipeline: Pipeline | None
) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    for topic, payload in messages:
        out = translator.translate(topic, payload, now)
        if out.rejections:
            raise SystemExit(f"rejected: {out.rejections[0].detail}")
        if pipeline is not None:
            for p in out.publishes:
                if pipeline.handle(p.topic, p.payload, p.content_type, now).rejections:
                    raise SystemExit(f"ingest rejected {p.payload[:200]!r}")
    return len(messages) / (time.perf_counter() - started)


def native_pipeline(city: City, devices: list[str], n: int) -> float:
    topics = Topics("bench")
    pipeline = Pipeline(city, topics, IngestSettings(rate_limit_factor=0, max_age_s=30 * 86400))
    bodies = [
        (
            topics.sensor_up(devices[i % len(devices)]),
            encode_native(
                devices[i % len(devices)],
                None,
                START + timedelta(seconds=i),
                [Sample("water_level", 100.0, "cm"), Sample("rssi", -97.0, "dBm")],
            ),
        )
        for i in range(n)
    ]
    now = datetime.now(UTC)
    started = time.perf_counter()
    for topic, payload in bodies:
        if pipeline.handle(topic, payload, "application/json", now).rejections:
            raise SystemExit("native rejected")
    return n / (time.perf_counter() - started)


def stored(settings: Settings) -> int:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows("SELECT count(value) FROM /^(water_level|rssi)$/")
    return sum(int(str(r["count"])) for r in rows)


def e2e_case(
    stack: LocalStack, city: City, source: Mosquitto, kind: str, messages: list[Message], per: int
) -> float:
    """Messages/s from the first publish to InfluxDB counting every reading."""
    root, db = f"b{uuid.uuid4().hex[:8]}", f"bench_{uuid.uuid4().hex[:8]}"
    stack.create_database(db)
    settings = stack.settings(database=db, root=root)
    spool = Path(tempfile.mkdtemp(prefix="pantau-bench-spool-"))
    settings.ingest = IngestSettings(
        rate_limit_factor=0, max_age_s=30 * 86400, spool_dir=spool, client_id=f"bench-{root}"
    )
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    service.wait_subscribed(10)
    relay = None
    node = None
    devices = sorted(d.id for d in city.devices.values() if d.kind == "water_level_station")[:50]
    if kind in ("chirpstack", "tts"):
        path = lorawan_config(spool / "b.yaml", devices, kind, source.port, f"bench-{root}")
        relay = build("lorawan", path, settings)
    elif kind == "sparkplug":
        relay = build("sparkplug", sparkplug_config(spool / "b.yaml", source.port, root), settings)
    if relay is not None:
        relay.start()
        relay.wait_ready(15)
    target = MqttSettings(host=source.host, port=source.port) if relay else settings.mqtt
    if kind == "sparkplug":
        node = PumpStationNode(target, "Drainage", NODE, f"edge-{root}")
        node.start()  # the births: 1 sump level, 1 pump state
        time.sleep(0.5)
    expected = len(messages) * per + (2 if node else 0)
    topics = Topics(root)
    publisher = Publisher(target)
    started = time.perf_counter()
    for topic, payload in messages:
        if kind == "native":
            publisher.publish(topics.sensor_up(topic), payload, "application/json")
        else:
            publisher.publish(topic, payload)
    publisher.flush()
    deadline = time.monotonic() + 300
    while stored(settings) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"{kind}: only {stored(settings)} of {expected} readings stored")
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    publisher.close()
    if node is not None:
        node.stop()
    if relay is not None:
        relay.stop()
    service.stop()
    stack.drop_database(db)
    return len(messages) / elapsed


def native_messages(devices: list[str], n: int) -> list[Message]:
    # (device id in place of the topic: the case builds the topic of its own root)
    return [
        (
            devices[i % len(devices)],
            encode_native(
                devices[i % len(devices)],
                None,
                START + timedelta(seconds=i),
                [Sample("water_level", 100.0, "cm"), Sample("rssi", -97.0, "dBm")],
            ),
        )
        for i in range(n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bridges")
    parser.add_argument("--quick", action="store_true", help="a smoke run, a few seconds")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    n, n_e2e = (2_000, 1_000) if args.quick else (10_000, 5_000)
    city = load_city()
    devices = sorted(d.id for d in city.devices.values() if d.kind == "water_level_station")[:50]
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    rows: list[dict[str, Any]] = []

    def row(path: str, form: str, per_s: float, readings: int) -> None:
        rows.append(
            {
                "path": path,
                "form": form,
                "msg_per_s": round(per_s, 1),
                "readings_per_s": round(per_s * readings, 1),
            }
        )
        print(f"{path:<22} {form:<34} {per_s:>9,.0f} msg/s {per_s * readings:>9,.0f} readings/s")

    topics = Topics("bench")
    pipeline = Pipeline(city, topics, IngestSettings(rate_limit_factor=0, max_age_s=30 * 86400))
    with tempfile.TemporaryDirectory() as tmp:
        translators: dict[str, Callable[[], Translator]] = {
            "chirpstack": lambda: LorawanTranslator(
                load_lorawan(
                    lorawan_config(Path(tmp) / "c.yaml", devices, "chirpstack", 1, "c"), city
                ),
                city,
                topics,
            ),
            "tts": lambda: LorawanTranslator(
                load_lorawan(lorawan_config(Path(tmp) / "t.yaml", devices, "tts", 1, "t"), city),
                city,
                topics,
            ),
        }
        cases: list[tuple[str, Callable[[], Translator], list[Message], int]] = [
            ("ChirpStack uplink", translators["chirpstack"], uplinks("chirpstack", devices, n), 2),
            ("The Things Stack uplink", translators["tts"], uplinks("tts", devices, n), 2),
        ]
        sparkplug = load_sparkplug(sparkplug_config(Path(tmp) / "s.yaml", 1, "s"), city)
        for label, make, messages, per in cases:
            row("translate", label, translate_case(make(), messages, None), per)
            row("translate + pipeline", label, translate_case(make(), messages, pipeline), per)
        for with_pipeline in (None, pipeline):
            sp = SparkplugTranslator(sparkplug, city, topics)
            sp.translate(f"spBv1.0/Drainage/NBIRTH/{NODE}", _birth(), datetime.now(UTC))
            path = "translate" if with_pipeline is None else "translate + pipeline"
            row(path, "Sparkplug B NDATA", translate_case(sp, ndata(n), with_pipeline), 1)
    row("pipeline", "native JSON (2 readings)", native_pipeline(city, devices, n), 2)
    with LocalStack() as stack:
        source = Mosquitto(Path(tempfile.mkdtemp(prefix="pantau-bench-ns-")), free_port())
        source.start()
        try:
            e2e = [
                ("native", "native JSON (2 readings)", native_messages(devices, n_e2e), 2),
                ("chirpstack", "ChirpStack uplink", uplinks("chirpstack", devices, n_e2e), 2),
                ("tts", "The Things Stack uplink", uplinks("tts", devices, n_e2e), 2),
                ("sparkplug", "Sparkplug B NDATA", ndata(n_e2e), 1),
            ]
            for kind, label, messages, per in e2e:
                row("end to end", label, e2e_case(stack, city, source, kind, messages, per), per)
        finally:
            source.stop()
    load_after = os.getloadavg()
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = f"bridges-{datetime.now(UTC).date()}{'-quick' if args.quick else ''}.json"
        doc = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "cpus": os.cpu_count(),
            "cases": rows,
        }
        (RESULTS_DIR / name).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"saved bench/results/{name}")
    return 0


def _birth() -> bytes:
    p = Payload(timestamp=int(START.timestamp() * 1000), seq=255)
    p.metrics.add(name="Sump/Level", alias=3, datatype=10, double_value=1.0)
    return p.SerializeToString()


if __name__ == "__main__":
    raise SystemExit(main())
