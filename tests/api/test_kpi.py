"""Each KPI against values computed by hand on a fixed set of incident timelines.

Period: November 2026, asked on 10 December (so as_of = the period's end).

| id | hazard, severity | opened | ack | resolved | ack due | resolve due | reopen | first reading |
|---|---|---|---|---|---|---|---|---|
| A | flood siaga | +1 h | +6 | +100 | +10 | +240 | 0 | -5 |
| B | flood awas | +2 h | +20 | +200 | +5 | +120 | 1 | -3 |
| C | road_damage waspada (citizen) | +3 h | - | +30 | +240 | +10080 | 0 | none |
| D | traffic_jam siaga | +4 h | +10 | - | +15 | +120 | 0 | -12 |
| E | flood siaga, opened 31 Oct | -1 d | - | - | +10 | +240 | 0 | -5 |
| F | heavy_rain info | end - 60 | - | - | +60 (= end) | +720 | 0 | -1 |
| G | sensor_offline waspada, suppressed | +5 h | - | - | +60 | +1440 | 0 | -60 |

(minutes relative to opening unless stated.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.kpi import IncidentFacts, compute, p90, score, subscore
from api.kpi_config import Better, KpiConfig, load_kpi_config
from pantau.devices import default_config_dir
from pantau.incidents import Hazard, Severity, WorkflowState

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 10, tzinfo=UTC)
M = timedelta(minutes=1)


def fact(
    id_: int,
    hazard: Hazard,
    severity: Severity,
    opened: datetime,
    *,
    ack: int | None,
    resolved: int | None,
    ack_due: int,
    resolve_due: int,
    reopen: int = 0,
    first: int | None,
    state: WorkflowState | None = None,
) -> IncidentFacts:
    if state is None:
        state = WorkflowState.RESOLVED if resolved is not None else WorkflowState.OPEN
    return IncidentFacts(
        id=id_,
        hazard=hazard,
        severity_max=severity,
        workflow_state=state,
        opened_at=opened,
        acknowledged_at=None if ack is None else opened + ack * M,
        resolved_at=None if resolved is None else opened + resolved * M,
        sla_ack_due=opened + ack_due * M,
        sla_resolve_due=opened + resolve_due * M,
        reopen_count=reopen,
        evidence_first_at=None if first is None else opened - first * M,
    )


H = timedelta(hours=1)
FACTS = [
    fact(1, Hazard.FLOOD, Severity.SIAGA, START + H, ack=6, resolved=100, ack_due=10,
         resolve_due=240, first=5),
    fact(2, Hazard.FLOOD, Severity.AWAS, START + 2 * H, ack=20, resolved=200, ack_due=5,
         resolve_due=120, reopen=1, first=3),
    fact(3, Hazard.ROAD_DAMAGE, Severity.WASPADA, START + 3 * H, ack=None, resolved=30,
         ack_due=240, resolve_due=10080, first=None),
    fact(4, Hazard.TRAFFIC_JAM, Severity.SIAGA, START + 4 * H, ack=10, resolved=None,
         ack_due=15, resolve_due=120, first=12, state=WorkflowState.ON_SITE),
    fact(5, Hazard.FLOOD, Severity.SIAGA, START - timedelta(days=1), ack=None, resolved=None,
         ack_due=10, resolve_due=240, first=5),
    fact(6, Hazard.HEAVY_RAIN, Severity.INFO, END - H, ack=None, resolved=None, ack_due=60,
         resolve_due=720, first=1),
    fact(7, Hazard.SENSOR_OFFLINE, Severity.WASPADA, START + 5 * H, ack=None, resolved=None,
         ack_due=60, resolve_due=1440, first=60, state=WorkflowState.SUPPRESSED),
]  # fmt: skip


def test_counts() -> None:
    k = compute(FACTS, START, END, NOW)
    assert k.as_of == END
    assert k.incidents == 6  # E was opened in October
    assert k.by_hazard == {
        "flood": 2, "heavy_rain": 1, "road_damage": 1, "sensor_offline": 1, "traffic_jam": 1
    }  # fmt: skip
    assert k.by_severity == {"awas": 1, "info": 1, "siaga": 2, "waspada": 2}


def test_time_to_acknowledge_and_resolve() -> None:
    k = compute(FACTS, START, END, NOW)
    # acks 6, 20, 10: mean 12, p90 = ceil(0.9 * 3) = 3rd smallest = 20
    assert (k.ack_minutes.count, k.ack_minutes.mean, k.ack_minutes.p90) == (3, 12.0, 20.0)
    # resolves 100, 200, 30: mean 110, p90 200
    assert (k.resolve_minutes.count, k.resolve_minutes.mean, k.resolve_minutes.p90) == (
        3, 110.0, 200.0
    )  # fmt: skip


def test_sla_compliance() -> None:
    k = compute(FACTS, START, END, NOW)
    # A met+met, B missed+missed, C met (resolved at 30 <= ack due 240) + met,
    # D met + missed (unresolved, due passed), F pending+pending (ack due == as_of),
    # G missed+missed.
    assert (k.sla_met, k.sla_missed, k.sla_pending) == (5, 5, 2)
    assert k.sla_compliance_pct == 50.0


def test_backlog_reopen_rate_and_detection_delay() -> None:
    k = compute(FACTS, START, END, NOW)
    assert k.backlog == 3  # D, E (from October), F; not G (suppressed), not A/B/C
    assert k.reopened == 1
    assert k.reopen_rate_pct == pytest.approx(100 / 3)  # B of A, B, C
    # delays A 5, B 3, D 12, F 1, G 60 (C has no device evidence)
    assert k.detection_delay_minutes.count == 5
    assert k.detection_delay_minutes.mean == pytest.approx(16.2)
    assert k.detection_delay_minutes.p90 == 60.0


def test_asked_mid_period_counts_only_what_is_known() -> None:
    now = START + 2 * H + 10 * M  # B opened 10 min ago, acked at +20: not yet
    k = compute(FACTS, START, END, now)
    assert k.as_of == now
    assert k.ack_minutes.count == 1 and k.ack_minutes.mean == 6.0  # A only
    # A: ack met, resolve pending (resolved at +100 = 02:40, after now); B: ack missed
    # (due +5 passed, acked later), resolve pending; the rest pending.
    assert (k.sla_met, k.sla_missed) == (1, 1)
    assert k.resolve_minutes.count == 0


def test_score_from_targets_and_weights() -> None:
    config = load_kpi_config(default_config_dir() / "kpi.yaml")
    k = score(compute(FACTS, START, END, NOW, availability_pct=97.0), config)
    assert k.subscores == {
        "ack_minutes_mean": 100.0,  # 12 <= 15
        "resolve_minutes_mean": 100.0,  # 110 <= 240
        "sla_compliance_pct": 55.56,  # 50 / 90
        "reopen_rate_pct": 0.0,  # 33.3 >= 2 x 5
        "sensor_availability_pct": 100.0,  # 97 / 95, capped
        "detection_delay_minutes_mean": 38.0,  # 100 x (2 - 16.2 / 10)
    }
    # weights 2, 2, 3, 1, 1, 1: (200 + 200 + 166.67 + 0 + 100 + 38) / 10
    assert k.score == pytest.approx(70.47, abs=0.01)


def test_score_skips_kpis_without_a_value() -> None:
    config = KpiConfig.model_validate(
        {"targets": {
            "sla_compliance_pct": {"target": 90, "weight": 3, "better": "higher"},
            "sensor_availability_pct": {"target": 95, "weight": 1, "better": "higher"},
        }}
    )  # fmt: skip
    k = score(compute(FACTS, START, END, NOW), config)  # no availability
    assert k.subscores == {"sla_compliance_pct": 55.56}
    assert k.score == 55.56
    assert score(compute([], START, END, NOW), config).score is None


def test_subscore_and_p90_edges() -> None:
    assert subscore(15, 15, Better.LOWER) == 100.0
    assert subscore(22.5, 15, Better.LOWER) == 50.0
    assert subscore(30, 15, Better.LOWER) == 0.0
    assert subscore(45, 90, Better.HIGHER) == 50.0
    assert p90([]) is None
    assert p90([7.0]) == 7.0
    assert p90([float(i) for i in range(1, 11)]) == 9.0  # ceil(9.0) = 9th
    assert p90([float(i) for i in range(1, 12)]) == 10.0  # ceil(9.9) = 10th
