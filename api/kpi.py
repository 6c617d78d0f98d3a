"""e-Kinerja KPIs: pure functions of incident timestamps (and of data presence for
availability). Every formula is stated here and in the README's "API" section.

Period: [start, end), UTC. `as_of` = min(end, now): what can be known at the time of
asking. The incidents *of the period* are those opened (event time) in [start, end).
Followed to a later time (`followed_to` >= end, e.g. a storm's incidents until every
crew answered), `as_of` = min(followed_to, now) for what people did about them; data
presence (availability) stays over [start, min(end, as_of)).

- counts: incidents of the period by hazard and by maximum severity.
- time to acknowledge (min): acknowledged_at - opened_at, over incidents of the period
  acknowledged before as_of; mean and p90.
- time to resolve (min): resolved_at - opened_at, likewise for resolved ones.
- p90: nearest rank, the ceil(0.9 n)-th smallest value.
- SLA compliance %: each incident of the period owes two checks, acknowledge by
  sla_ack_due and resolve by sla_resolve_due. The first response is the acknowledgement,
  or the resolution for an incident resolved straight from open. A check is *met* if
  that happened by its due time, *missed* if it happened later or has not happened and
  the due time is before as_of, and *pending* otherwise (not counted).
  compliance = met / (met + missed) x 100.
- backlog: incidents opened before end and not resolved by end (suppressed excluded),
  whenever they were opened.
- reopen rate %: incidents of the period reopened at least once / incidents of the
  period resolved at least once (resolved now, or reopened) x 100.
- detection delay (min): opened_at - evidence first_at, i.e. from the first breaching
  reading to the incident's opening, both in event time (includes the rule's hold
  time); incidents without device evidence (citizen reports) are left out.
- sensor availability %: buckets of `availability_bucket_minutes` from the period's
  start to min(end, as_of) in which a device stored at least one reading of its kind's
  first metric, summed over the scope's devices, / the buckets they owed x 100. A
  device owes the buckets from the one it was commissioned in (the registry's
  `commissioned`; none: all of them); a scope with no device in service has no value
  (null; the demo prints a dash), and a KPI without a value is left out of the score
  with its weight.
- camera availability %: likewise over the scope's cameras, a bucket counting when the
  camera stored at least one analysis that found no camera fault (a camera whose lens
  is covered or blurred still sends analyses, but the city cannot see through it).
- citizen satisfaction (tingkat kepuasan masyarakat): the mean of the ratings (1-5)
  citizens who reported an incident of the period gave its response, once resolved
  (one rating per report); with the number of ratings. No rating: no value.
- score 0-100: each KPI with a target scores s = min(100, 100 v / t) when higher is
  better; when lower is better s = 100 for v <= t, falling linearly to 0 at v = 2t.
  score = sum(w s) / sum(w) over the KPIs that have a value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pantau.incidents import Hazard, Severity, WorkflowState

from .kpi_config import Better, KpiConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFacts:
    """The timestamps a KPI needs from one incident."""

    id: int
    hazard: Hazard
    severity_max: Severity
    workflow_state: WorkflowState
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    sla_ack_due: datetime
    sla_resolve_due: datetime
    reopen_count: int
    evidence_first_at: datetime | None  # None: no device evidence
    zone_id: str = ""
    agency: str | None = None
    ratings: tuple[int, ...] = ()  # citizens' ratings (1-5) of the response, one per report


@dataclass(frozen=True, slots=True)
class Stat:
    count: int
    mean: float | None
    p90: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Kpis:
    start: datetime
    end: datetime
    as_of: datetime
    incidents: int
    by_hazard: dict[str, int]
    by_severity: dict[str, int]
    ack_minutes: Stat
    resolve_minutes: Stat
    sla_met: int
    sla_missed: int
    sla_pending: int
    sla_compliance_pct: float | None
    backlog: int
    reopened: int
    reopen_rate_pct: float | None
    detection_delay_minutes: Stat
    sensor_availability_pct: float | None
    camera_availability_pct: float | None
    satisfaction_ratings: int = 0
    satisfaction_mean: float | None = None
    score: float | None = None
    subscores: dict[str, float] = field(default_factory=dict)


def p90(values: Sequence[float]) -> float | None:
    """Nearest-rank 90th percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def stat(values: Sequence[float]) -> Stat:
    if not values:
        return Stat(0, None, None)
    return Stat(len(values), sum(values) / len(values), p90(values))


def _minutes(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 60.0


def _check(done: datetime | None, due: datetime, as_of: datetime) -> str:
    if done is not None and done <= as_of:
        return "met" if done <= due else "missed"
    return "missed" if due < as_of else "pending"


def compute(
    facts: Iterable[IncidentFacts],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    availability_pct: float | None = None,
    camera_availability_pct: float | None = None,
    followed_to: datetime | None = None,
) -> Kpis:
    """The KPIs of the period from every incident that may bear on it (opened before
    `end`; those opened before `start` only count towards the backlog)."""
    as_of = min(max(end, followed_to or end), now)
    all_facts = list(facts)
    period = [f for f in all_facts if start <= f.opened_at < end]
    acks = [
        _minutes(f.opened_at, f.acknowledged_at)
        for f in period
        if f.acknowledged_at is not None and f.acknowledged_at <= as_of
    ]
    resolves = [
        _minutes(f.opened_at, f.resolved_at)
        for f in period
        if f.resolved_at is not None and f.resolved_at <= as_of
    ]
    checks: Counter[str] = Counter()
    for f in period:
        first_response = f.acknowledged_at if f.acknowledged_at is not None else f.resolved_at
        checks[_check(first_response, f.sla_ack_due, as_of)] += 1
        checks[_check(f.resolved_at, f.sla_resolve_due, as_of)] += 1
    decided = checks["met"] + checks["missed"]
    backlog = sum(
        1
        for f in all_facts
        if f.opened_at < end
        and f.workflow_state is not WorkflowState.SUPPRESSED
        and (f.resolved_at is None or f.resolved_at >= end)
    )
    ever_resolved = [f for f in period if f.resolved_at is not None or f.reopen_count > 0]
    reopened = sum(1 for f in ever_resolved if f.reopen_count > 0)
    ratings = [r for f in period for r in f.ratings]
    delays = [
        _minutes(f.evidence_first_at, f.opened_at)
        for f in period
        if f.evidence_first_at is not None
    ]
    return Kpis(
        start=start,
        end=end,
        as_of=as_of,
        incidents=len(period),
        by_hazard=dict(sorted(Counter(f.hazard.value for f in period).items())),
        by_severity=dict(sorted(Counter(f.severity_max.name.lower() for f in period).items())),
        ack_minutes=stat(acks),
        resolve_minutes=stat(resolves),
        sla_met=checks["met"],
        sla_missed=checks["missed"],
        sla_pending=checks["pending"],
        sla_compliance_pct=100.0 * checks["met"] / decided if decided else None,
        backlog=backlog,
        reopened=reopened,
        reopen_rate_pct=100.0 * reopened / len(ever_resolved) if ever_resolved else None,
        detection_delay_minutes=stat(delays),
        sensor_availability_pct=availability_pct,
        camera_availability_pct=camera_availability_pct,
        satisfaction_ratings=len(ratings),
        satisfaction_mean=sum(ratings) / len(ratings) if ratings else None,
    )


def scored_values(k: Kpis) -> dict[str, float | None]:
    return {
        "ack_minutes_mean": k.ack_minutes.mean,
        "resolve_minutes_mean": k.resolve_minutes.mean,
        "sla_compliance_pct": k.sla_compliance_pct,
        "reopen_rate_pct": k.reopen_rate_pct,
        "sensor_availability_pct": k.sensor_availability_pct,
        "camera_availability_pct": k.camera_availability_pct,
        "detection_delay_minutes_mean": k.detection_delay_minutes.mean,
        "satisfaction_mean": k.satisfaction_mean,
    }


def subscore(value: float, target: float, better: Better) -> float:
    if better is Better.HIGHER:
        return min(100.0, 100.0 * value / target)
    if value <= target:
        return 100.0
    return max(0.0, 100.0 * (2.0 - value / target))


def score(k: Kpis, config: KpiConfig) -> Kpis:
    """`k` with its 0-100 score and the sub-score of every KPI that has a value."""
    values = scored_values(k)
    subs: dict[str, float] = {}
    weighted = 0.0
    weights = 0.0
    for name, t in config.targets.items():
        v = values[name]
        if v is None:
            continue
        s = subscore(v, t.target, t.better)
        subs[name] = round(s, 2)
        weighted += t.weight * s
        weights += t.weight
    total = round(weighted / weights, 2) if weights > 0 else None
    return replace(k, score=total, subscores=subs)
