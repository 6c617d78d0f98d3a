"""Three rules replicas through storm-karawaci; two of them SIGKILLed mid-storm.

Each replica is `pantau rules` as its own process (rules.partitioned) on one SQL store
(PostgreSQL), one broker and one InfluxDB; they share the kecamatan partitions through
leases (rules.replicas). Once the storm's first incidents are open one replica is
SIGKILLed and left dead; once the survivors have taken its partitions, a second one.
The last replica ends up with every partition: it took each dead one's persistent
session (named for the partition) with what the broker queued there, and rebuilt the
partition's state from InfluxDB. The replay's end reaches every partition as a control
message on its session (rules.partitions), so it comes after that session's readings.

Checked: the incidents are exactly the oracle's (testkit.truth: precision and recall
100 %), one per dedup key; every incident's crew alert arrived over MQTT and at the
chat webhook, copies only under the same message id; every escalation (the storm is
in the past, so every incident is overdue at once) exactly once per incident and
level; a dead replica's partitions moved within 15 s.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, text

from ingest.service import IngestService
from pantau.city import City
from pantau.incidents import DedupKey, Hazard, Severity
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import RulesSettings, Settings
from pantau.store import Incident
from pantau.store.leases import holders
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.partitions import advance_payload, advance_topic
from rules.rulespec import load_rules
from rules.service import make_store
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import Collector, Publisher
from testkit.payloads import native
from testkit.services import RulesProcess, wait_until
from testkit.truth import Observed, ground_truth
from tests.unit.test_notify import Gateway, gateway_handler

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REBUILD_WINDOW_S = 3 * 86400  # the scenario's event time is in the past
TTL_S, PERIOD_S = 6.0, 1.5  # a dead replica's share moves in ttl + period (+ load)
MOVE_WITHIN_S = 15.0
SPEED = 150.0  # the 2 h storm in about 50 s: time to kill twice mid-storm
SECRET = secrets.token_hex(32)


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    gw = Gateway(SECRET.encode())
    server = ThreadingHTTPServer(("127.0.0.1", 0), gateway_handler(gw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield gw, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def publish_advance(settings: Settings, report: SimReport) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    info = client.publish(advance_topic(settings.mqtt.root), advance_payload(report.end), qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_three_rules_replicas_two_sigkilled_mid_storm(
    stack: LocalStack,
    settings: Settings,
    city: City,
    postgres_url: str,
    tmp_path: Path,
    gateway: tuple[Gateway, str],
) -> None:
    gw, hook = gateway
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "rules": RulesSettings(client_id=f"rules-{settings.mqtt.root}", tick_interval_s=0),
        }
    )
    zones = ZoneIndex.for_city(city)
    store = make_store(settings, zones)  # migrates the schema once, before the replicas
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    alerts = Collector(settings.mqtt, f"{settings.mqtt.root}/alerts/#")
    ingest = IngestService(settings, city, make_writer(settings.influx))
    ingest.start()
    env = {
        "PANTAU_RULES__PARTITIONED": "true",
        "PANTAU_RULES__TICK_INTERVAL_S": "0",
        "PANTAU_RULES__REBUILD_WINDOW_S": str(REBUILD_WINDOW_S),
        "PANTAU_RULES__WEBHOOK_URLS": json.dumps({"*": [hook]}),
        "PANTAU_RULES__WEBHOOK_SECRET": SECRET,
        "PANTAU_RULES__WEBHOOK_MAX_ATTEMPTS": "2",
        "PANTAU_RULES__WEBHOOK_TIMEOUT_S": "2",
        "PANTAU_RULES__WEBHOOK_BACKOFF_S": "0.2",
        "PANTAU_LEASES__TTL_S": str(TTL_S),
        "PANTAU_LEASES__PERIOD_S": str(PERIOD_S),
    }
    names = ["r1", "r2", "r3"]
    replicas = {
        n: RulesProcess(
            stack, settings, postgres_url, tmp_path / f"{n}.log", PANTAU_REPLICA=n, **env
        )
        for n in names
    }
    partitions = sorted(z.id for z in city.zones.kecamatan)
    reports: list[SimReport] = []

    def owners() -> dict[str, list[str]]:
        """Live holders of each partition lease, by owner."""
        out: dict[str, list[str]] = defaultdict(list)
        for lease in holders(store.engine, "rules"):
            out[lease.owner].append(lease.key)
        return out

    def logs(what: str) -> set[str]:
        """Partitions some replica logged `partition <id> <what>` for."""
        pattern = re.compile(rf"partition (\S+) {what}")
        return {m.group(1) for r in replicas.values() for m in pattern.finditer(r.log_text())}

    def incidents_in_sql() -> int:
        query = text("SELECT count(*) FROM incidents WHERE hazard <> :camera")
        with store.engine.connect() as conn:
            return int(conn.execute(query, {"camera": Hazard.CAMERA_FAULT.value}).scalar_one())

    def moved_from(dead: str, survivors: list[str]) -> float:
        """Seconds until every partition is held by a survivor consuming it."""
        started = time.monotonic()
        wait_until(
            lambda: sorted(k for s in survivors for k in owners().get(s, [])) == partitions,
            60,
            f"{dead}'s partitions to move",
            poll=0.1,
        )
        return time.monotonic() - started

    moves: list[float] = []
    try:
        assert ingest.wait_subscribed(10)
        for r in replicas.values():
            r.start()
        # Every partition's session exists (so the broker queues for it) and the share
        # has settled: 5, 4, 4.
        wait_until(lambda: logs("consuming") >= set(partitions), 120, "every partition consuming")
        wait_until(
            lambda: sorted(len(v) for v in owners().values()) == [4, 4, 5], 60, "a fair share"
        )
        player = threading.Thread(
            target=lambda: reports.append(run_scenario(city, scenario, settings.mqtt, speed=SPEED))
        )
        player.start()
        wait_until(lambda: incidents_in_sql() >= 3, 120, "the first incidents", poll=0.05)
        replicas["r1"].kill()
        moves.append(moved_from("r1", ["r2", "r3"]))
        assert player.is_alive(), "the storm ended before the second kill"
        replicas["r2"].kill()
        moves.append(moved_from("r2", ["r3"]))
        player.join(180)
        (report,) = reports
        assert report.completed
        wait_until(lambda: ingest.stats.messages >= report.messages, 120, "ingest")
        publish_advance(settings, report)
        wait_until(
            lambda: logs("advanced") == set(partitions) or not replicas["r3"].alive(),
            180,
            "every partition to reach the storm's end",
            poll=1.0,
        )
        assert replicas["r3"].alive(), replicas["r3"].log_tail()
        with store.engine.connect() as conn:
            open_ids = [int(r[0]) for r in conn.execute(text("SELECT id FROM incidents"))]
        # Every alert and escalation published and delivered to the webhook.
        wait_until(
            lambda: unsent(store.engine) == 0 and len(alert_ids(alerts)) >= len(open_ids),
            60,
            "the outbox to drain",
        )
        time.sleep(2.0)  # last PUBLISHes and POSTs reach the receivers
    except BaseException:
        for n, r in replicas.items():
            print(f"--- {n}\n{r.log_tail(60)}")
        print(dict(owners()))
        raise
    finally:
        for r in replicas.values():
            r.stop()
        keep = Path("/tmp/rules-replicas-logs")
        keep.mkdir(exist_ok=True)
        for n, r in replicas.items():
            (keep / f"{n}.log").write_text(r.log_text())
        ingest.stop()
        alerts.close()

    print(f"\npartitions moved in {', '.join(f'{m:.1f} s' for m in moves)}")
    with store.engine.connect() as conn:
        keys = Counter(
            f"{r[0]}|{r[1]}|{r[2]}"
            for r in conn.execute(text("SELECT rule_id, zone_id, hazard FROM incidents"))
        )
        escalations = Counter(
            (int(r[0]), json.loads(r[1])["level"])
            for r in conn.execute(
                text("SELECT incident_id, payload FROM outbox WHERE kind = 'escalation'")
            )
        )
        levels: dict[int, int] = {
            int(r[0]): int(r[1])
            for r in conn.execute(text("SELECT id, escalation_level FROM incidents"))
        }
    every: list[Incident] = store.active()
    incidents = [i for i in every if i.key.hazard is not Hazard.CAMERA_FAULT]
    store.close()
    assert keys and max(keys.values()) == 1, keys  # one incident per dedup key
    rules = load_rules(settings.config_dir / "rules.yaml", city)
    truth = ground_truth(city, scenario, rules, report.end, start=report.start)
    verdict = truth.check(Observed(i.key, i.opened_at, i.severity_max) for i in incidents)
    print(verdict.summary().splitlines()[0])
    assert verdict.exact, verdict.summary()  # precision and recall 100 %

    # Every crew alert delivered over MQTT, copies only under the same message id.
    ids_by_alert: dict[tuple[int, str, object], set[int]] = defaultdict(set)
    for m in alerts.snapshot():
        body = json.loads(m.payload)
        part = body.get("level") if body["alert"] == "escalation" else body.get("severity")
        ids_by_alert[(body["incident_id"], body["alert"], part)].add(body["message_id"])
    opened = {inc for inc, kind, _ in ids_by_alert if kind == "opened"}
    assert opened == {i.id for i in every}
    assert all(len(ids) == 1 for ids in ids_by_alert.values()), ids_by_alert
    # Each escalation once: one outbox row per incident and level, as the levels say,
    # and each published.
    assert escalations and max(escalations.values()) == 1, escalations
    assert sum(levels.values()) == len(escalations)
    published = {(inc, part) for inc, kind, part in ids_by_alert if kind == "escalation"}
    assert published == set(escalations)
    # And at the webhook: every alert and escalation row, copies only of the same id.
    with gw.lock:
        hooked = Counter(int(h["X-Pantau-Message-Id"]) for h, _ in gw.deliveries)
    mqtt_ids = {i for ids in ids_by_alert.values() for i in ids}
    assert set(hooked) == mqtt_ids
    print(
        f"{len(incidents)} incidents, {len(escalations)} escalations, {len(mqtt_ids)} alert "
        f"ids, webhook copies {sum(hooked.values()) - len(hooked)}"
    )
    assert all(m <= MOVE_WITHIN_S for m in moves), moves


def unsent(engine: Engine) -> int:
    query = text(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        " OR (kind <> 'event' AND notify_state = 'pending')"
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def alert_ids(alerts: Collector) -> set[int]:
    return {
        json.loads(m.payload)["incident_id"]
        for m in alerts.snapshot()
        if json.loads(m.payload).get("alert") == "opened"
    }


def test_an_owner_paused_past_its_lease_is_fenced_off_when_it_resumes(
    stack: LocalStack, settings: Settings, city: City, postgres_url: str, tmp_path: Path
) -> None:
    """The race, forced: replica a is SIGSTOPped while flood readings for one of its
    partitions reach its socket; b takes the partition once a's lease ran out and opens
    the incident; a is resumed with those readings in hand. Its first act on the
    partition is refused (the lease has b's epoch) and it stops acting on it; the
    incident exists once, its alert under one message id, and a rise after the resume
    is applied once."""
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "rules": RulesSettings(client_id=f"rules-{settings.mqtt.root}", tick_interval_s=0),
        }
    )
    zones = ZoneIndex.for_city(city)
    store = make_store(settings, zones)
    device = min(
        (d for d in city.devices.values() if d.kind == "water_level_station" and d.levels),
        key=lambda d: d.id,
    )
    assert device.levels is not None
    part, topics = device.kecamatan_id, Topics(settings.mqtt.root)
    key = DedupKey("flood-water-level", device.kelurahan_id, Hazard.FLOOD)
    env = {
        "PANTAU_RULES__PARTITIONED": "true",
        "PANTAU_RULES__TICK_INTERVAL_S": "0",
        "PANTAU_RULES__REBUILD_WINDOW_S": "0",  # no ingest here: nothing to rebuild from
        "PANTAU_LEASES__TTL_S": "3",
        "PANTAU_LEASES__PERIOD_S": "1",
    }
    a = RulesProcess(stack, settings, postgres_url, tmp_path / "a.log", PANTAU_REPLICA="a", **env)
    b = RulesProcess(stack, settings, postgres_url, tmp_path / "b.log", PANTAU_REPLICA="b", **env)
    alerts = Collector(settings.mqtt, f"{settings.mqtt.root}/alerts/crews/+")
    publisher = Publisher(settings.mqtt)
    now = datetime.now(UTC).replace(microsecond=0)

    def level(at: datetime, cm: float) -> None:
        body = native(device.id, at, readings=[{"metric": "water_level", "value": cm}])
        publisher.publish(topics.sensor_up(device.id), body)

    def owner() -> tuple[str, int]:
        (lease,) = [x for x in holders(store.engine, "rules") if x.key == part]
        return lease.owner, lease.epoch

    lost = re.compile(
        rf"(lease rules/{part} lost by a|a lost lease rules/{part}|{part}: session taken over)"
    )
    try:
        a.start()
        wait_until(lambda: f"partition {part} consuming" in a.log_text(), 60, "a consuming")
        a_epoch = owner()[1]
        a.signal(signal.SIGSTOP)
        alert_cm = device.levels.alert_cm
        for minutes in (6, 5, 4, 3):  # above the alert level, held 3 minutes: waspada
            level(now - timedelta(minutes=minutes), alert_cm + 5)
        publisher.flush()
        b.start()
        wait_until(lambda: owner()[0] == "b", 30, "b to take the partition")
        wait_until(lambda: store.by_key(key) is not None, 60, "b to open the incident")
        assert owner()[1] > a_epoch
        a.signal(signal.SIGCONT)  # a resumes with the readings in its socket
        wait_until(lambda: bool(lost.search(a.log_text())), 30, "a to stop acting on it")
        level(now - timedelta(minutes=2), device.levels.danger_cm + 5)  # a rise: awas
        level(now - timedelta(minutes=1), device.levels.danger_cm + 5)
        publisher.flush()
        wait_until(
            lambda: (inc := store.by_key(key)) is not None and inc.severity_max is Severity.AWAS,
            60,
            "the rise to be applied",
        )
        time.sleep(1.0)
    except BaseException:
        print(f"--- a\n{a.log_tail(60)}\n--- b\n{b.log_tail(60)}")
        raise
    finally:
        a.stop()
        b.stop()
        publisher.close()
        alerts.close()
    refused = re.findall(rf"lease rules/{part} lost by a \(epoch \d+\): now \w+", a.log_text())
    print(f"\na on resuming: {lost.findall(a.log_text())}; writes refused: {len(refused)}")
    (incident,) = store.history(key)
    detail = store.get(incident.id)
    store.close()
    assert detail is not None
    rises = [e for e in detail.timeline if e.kind == "severity" and e.to_state == "awas"]
    assert len(rises) == 1, detail.timeline  # applied once, by the owner
    ids: dict[str, set[int]] = defaultdict(set)
    for m in alerts.snapshot():
        body = json.loads(m.payload)
        if body["incident_id"] == incident.id:
            ids[f"{body['alert']}|{body['severity']}"].add(body["message_id"])
    assert ids and all(len(v) == 1 for v in ids.values()), ids
