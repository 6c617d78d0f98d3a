"""Every disk Pantau writes is bounded; each bound is filled here to show what happens:
camera evidence (age, total size, never a frame a recent incident links), the ingest
spool (its bound and its use in the metrics; a full spool blocks: test_spool.py),
citizen-report photos (dropped past their retention, the report stays) and logs
(rotated by the container runtime)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from sqlalchemy import insert, select

from ingest.metrics import IngestMetrics
from ingest.spool import Spool
from pantau.city import load_agencies
from pantau.clock import ManualClock
from pantau.devices import default_config_dir
from pantau.evidence import protected_windows, sweep
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Evidence, Hazard, Severity
from pantau.incidents import WorkflowState as W
from pantau.settings import IngestSettings, Settings
from pantau.store import (
    IncidentStore,
    load_sla_policy,
    migrate,
    placement_by_zone,
    zone_level_by_prefix,
)
from pantau.store.api_tables import CitizenReportRow
from pantau.store.migrate import make_engine
from pantau.store.prune import drop_report_photos

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
_, HAZARD_AGENCY = load_agencies(default_config_dir() / "agencies.yaml")


def _frame(root: Path, camera: str, at: datetime, size: int = 1000) -> Path:
    path = root / camera / f"{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z-flood.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8" + b"x" * (size - 4) + b"\xff\xd9")
    return path


def _store(tmp_path: Path) -> IncidentStore:
    migrate(f"sqlite:///{tmp_path}/p.db")
    return IncidentStore(
        f"sqlite:///{tmp_path}/p.db",
        load_sla_policy(),
        ManualClock(NOW),
        place=placement_by_zone(zone_level_by_prefix, HAZARD_AGENCY),
    )


def _incident(store: IncidentStore, camera: str, at: datetime, *, resolve: bool) -> int:
    ev = Evidence(
        device_ids=(camera,),
        metric="water_depth",
        peak_value=40.0,
        first_at=at,
        last_at=at + timedelta(minutes=20),
    )
    change = ConditionChange(
        key=DedupKey("cam-flood", f"kel-{camera}", Hazard.FLOOD),
        state=ConditionState.ACTIVE,
        severity=Severity.WASPADA,
        at=at + timedelta(minutes=20),
        evidence=ev,
        reason="water on the road",
    )
    inc = store.apply(change).incident
    assert inc is not None
    if resolve:
        store.transition(inc.id, W.RESOLVED, "crew:x", "fixed: ok", at + timedelta(hours=1))
    return inc.id


def test_evidence_is_bounded_by_age_and_size_but_keeps_linked_frames(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    store = _store(tmp_path)
    old = NOW - timedelta(days=120)  # past the 90-day evidence retention
    # cam-a: an incident 120 days ago, resolved: its frames may go.
    _incident(store, "cam-a", old, resolve=True)
    # cam-b: an incident 120 days ago still not resolved: its frames stay.
    _incident(store, "cam-b", old, resolve=False)
    # cam-c: an incident 10 days ago: its frames stay, however full the disk.
    recent = NOW - timedelta(days=10)
    _incident(store, "cam-c", recent, resolve=True)
    a_old = _frame(evidence, "cam-a", old + timedelta(minutes=5))
    b_old = _frame(evidence, "cam-b", old + timedelta(minutes=5))
    b_unlinked = _frame(evidence, "cam-b", old + timedelta(days=1))
    c_linked = [_frame(evidence, "cam-c", recent + timedelta(minutes=m)) for m in (-5, 0, 10)]
    young = [_frame(evidence, "cam-d", NOW - timedelta(days=d)) for d in (5, 4, 3, 2, 1)]
    stray = evidence / "cam-d" / "notes.jpg"  # not a frame Pantau wrote: left alone
    stray.write_bytes(b"x")
    windows = protected_windows(store.engine, now=NOW, keep=timedelta(days=90))
    assert set(windows) == {"cam-b", "cam-c"}

    # Age: frames past 90 days go, unless an open incident links them.
    s = sweep(evidence, now=NOW, max_age=timedelta(days=90), max_bytes=1 << 30, protected=windows)
    assert (s.deleted, s.kept_protected) == (2, 1)
    assert not a_old.exists() and not b_unlinked.exists() and b_old.exists()
    assert all(p.exists() for p in c_linked + young) and stray.exists()

    # Size: a 6,000-byte bound over 9 frames of 1,000 bytes: the oldest unlinked go first
    # (cam-d's 5- and 4-day-old frames); linked ones never.
    s = sweep(evidence, now=NOW, max_age=timedelta(days=90), max_bytes=6000, protected=windows)
    assert s.deleted == 3 and not s.over_budget and s.kept_bytes <= 6000
    assert [p.exists() for p in young] == [False, False, False, True, True]
    assert b_old.exists() and all(p.exists() for p in c_linked)

    # A bound only linked frames could meet: nothing linked is deleted, and it is said.
    s = sweep(evidence, now=NOW, max_age=timedelta(days=90), max_bytes=3000, protected=windows)
    assert s.over_budget and s.kept_protected == 4
    assert b_old.exists() and all(p.exists() for p in c_linked)
    assert not any(p.exists() for p in young)
    store.close()


def test_report_photos_are_dropped_past_their_retention_the_report_stays(tmp_path: Path) -> None:
    store = _store(tmp_path)
    incident = _incident(store, "cam-a", NOW - timedelta(days=400), resolve=False)
    store.close()
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    with engine.begin() as conn:
        for days in (400, 30):
            conn.execute(
                insert(CitizenReportRow).values(
                    received_at=NOW - timedelta(days=days), lon=106.6, lat=-6.2, zone_id="kel-x",
                    category="banjir", description="", photo=b"\xff\xd8jpeg",
                    photo_type="image/jpeg",
                    incident_id=incident, outcome="opened",
                )
            )  # fmt: skip
    assert drop_report_photos(engine, NOW - timedelta(days=365)) == 1
    with engine.connect() as conn:
        photos = [
            r.photo
            for r in conn.execute(select(CitizenReportRow).order_by(CitizenReportRow.received_at))
        ]
    assert photos == [None, b"\xff\xd8jpeg"]
    assert drop_report_photos(engine, NOW - timedelta(days=365)) == 0
    engine.dispose()


def test_the_spool_bound_and_its_use_are_in_the_metrics(tmp_path: Path) -> None:
    settings = Settings(ingest=IngestSettings(spool_max_bytes=2 * 1024**2))
    spool = Spool(tmp_path / "spool", max_bytes=2 * 1024**2, segment_bytes=64 << 10).open()
    metrics = IngestMetrics(settings, lambda: 0, spool_bytes=spool.disk_bytes)
    assert spool.append([b"r" * 1000] * 100, threading.Event())
    text = generate_latest(metrics.service.registry).decode()
    assert "pantau_ingest_spool_max_bytes 2.097152e+06" in text
    used = [ln for ln in text.splitlines() if ln.startswith("pantau_ingest_spool_bytes ")]
    assert used and float(used[0].split()[1]) >= 100_000
    spool.close()


def test_every_container_log_is_rotated() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        logging = service.get("logging")
        assert logging is not None, name
        assert logging["options"]["max-size"] == "10m" and logging["options"]["max-file"] == "5"
