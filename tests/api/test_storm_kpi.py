"""End to end: the storm scenario through the default rules into the incident store,
simulated crews answering their alerts through the API with realistic delays, and the
KPIs the API computes matching what the crews did.

Each incident goes to the crew the router names (or the agency supervisor off-shift).
A crew acknowledges after 2-12 minutes (one in five is slow: 20-40), dispatches
itself, is on site 15 minutes later and resolves 30-150 minutes after opening. The API's
clock follows the simulated time, so timeline times are the crews' times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from statistics import mean

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.context import ApiContext, build_context
from api.kpi import p90
from api.principal import Principal, Role
from api.security import issue_token
from pantau.clock import ManualClock
from pantau.devices import default_config_dir
from pantau.incidents import ConditionChange
from rules.engine import RuleEngine
from rules.routing import Router
from rules.rulespec import load_rules
from rules.store.models import IncidentRow
from rules.store.store import _incident
from rules.zoneindex import ZoneIndex
from simulators.messages import iter_messages
from simulators.scenario import find_scenario, load_scenario
from tests.api.conftest import CITY, ZONES, api_settings

M = timedelta(minutes=1)
SCOPE = "kec-karawaci"
KARAWACI = frozenset(d.id for d in CITY.devices.values() if d.kecamatan_id == SCOPE)


def storm_changes() -> tuple[list[ConditionChange], datetime, datetime]:
    rules = load_rules(default_config_dir() / "rules.yaml", CITY)
    scenario = load_scenario(find_scenario("storm-karawaci"), CITY)
    end = scenario.start + timedelta(hours=2)
    engine = RuleEngine(CITY, rules, ManualClock(datetime(2000, 1, 1, tzinfo=UTC)))
    changes: list[ConditionChange] = []
    for message in iter_messages(CITY, scenario):
        if message.sim_time >= end:
            break
        # Karawaci only, where the storm is: a seventh of the work, the same floods.
        changes += engine.ingest(r for r in message.readings if r.device_id in KARAWACI)
    changes += engine.advance_watermark(end)
    return changes, scenario.start, end


@pytest.fixture
def storm(tmp_path: Path) -> Iterator[tuple[ApiContext, ManualClock, datetime, datetime]]:
    changes, start, end = storm_changes()
    clock = ManualClock(start)
    ctx = build_context(
        api_settings(f"sqlite:///{tmp_path}/pantau.db"),
        clock=clock,
        city=CITY,
        zones=ZONES,
        use_influx=False,
    )
    for change in changes:
        # Other kecamatan's devices were left out, so their absence rules fire: skip.
        if ctx.geo.kecamatan_of(change.key.zone_id) != SCOPE:
            continue
        clock.set(change.at)
        ctx.store.apply(change)
    yield ctx, clock, start, end
    ctx.close()


def test_kpis_match_the_crews_behaviour(
    storm: tuple[ApiContext, ManualClock, datetime, datetime],
) -> None:
    ctx, clock, start, end = storm
    router = Router(ctx.roster, ZoneIndex.for_city(CITY))
    with ctx.sessions() as session:
        rows = session.scalars(select(IncidentRow).order_by(IncidentRow.id))
        incidents = [_incident(r) for r in rows]
    assert len(incidents) >= 5, "the storm should raise several incidents"
    assert {ctx.geo.kecamatan_of(i.key.zone_id) for i in incidents} == {SCOPE}
    rng = Random(4)
    plan = []  # (time, incident id, crew, action)
    expected: dict[int, tuple[timedelta, timedelta]] = {}
    for inc in incidents:
        crew = router.route(inc.key.zone_id, inc.key.hazard, inc.opened_at)
        slow = rng.random() < 0.2
        ack = rng.randint(20, 40) * M if slow else rng.randint(2, 12) * M
        resolve = max(ack + 20 * M, rng.randint(30, 150) * M)
        expected[inc.id] = (ack, resolve)
        plan += [
            (inc.opened_at + ack, inc.id, crew, "acknowledge"),
            (inc.opened_at + ack + M, inc.id, crew, "dispatch"),
            (inc.opened_at + ack + 15 * M, inc.id, crew, "on-site"),
            (inc.opened_at + resolve, inc.id, crew, "resolve"),
        ]
    tokens: dict[str, dict[str, str]] = {}

    def headers(crew: str) -> dict[str, str]:
        if crew not in tokens:
            roster = {c.id: c for c in ctx.roster.crews}
            if crew in roster:
                c = roster[crew]
                who = Principal(
                    subject=crew, role=Role.CREW, agency=c.agency, kecamatan=c.kecamatan,
                    crew_id=crew,
                )  # fmt: skip
            else:  # a supervisor takes what no crew on shift covers
                agency = next(a for a, s in ctx.roster.supervisors.items() if s == crew)
                who = Principal(subject=crew, role=Role.SUPERVISOR, agency=agency)
            token = issue_token(who, ctx.signing_key, datetime.now(UTC), timedelta(hours=1))
            tokens[crew] = {"Authorization": f"Bearer {token}"}
        return tokens[crew]

    by_crew: defaultdict[str, list[timedelta]] = defaultdict(list)
    with TestClient(create_app(ctx)) as client:
        for at, incident_id, crew, action in sorted(plan, key=lambda p: (p[0], p[1])):
            clock.set(at)
            body: dict[str, str] = {}
            if action == "dispatch":
                if not crew.endswith("-supervisor"):
                    body = {"crew_id": crew}
                else:
                    continue  # a supervisor goes on site without dispatching a crew
            if action == "resolve":
                body = {"code": "receded", "note": "air surut"}
            if action == "on-site" and crew.endswith("-supervisor"):
                continue
            r = client.post(f"/incidents/{incident_id}/{action}", json=body, headers=headers(crew))
            assert r.status_code == 200, (action, crew, r.text)
            if action == "acknowledge":
                by_crew[crew].append(expected[incident_id][0])
        clock.set(end + timedelta(days=1))
        ops = {
            "Authorization": "Bearer "
            + issue_token(
                Principal(subject="ops", role=Role.OPERATOR),
                ctx.signing_key,
                datetime.now(UTC),
                timedelta(hours=1),
            )
        }
        period = {
            "start": (start - timedelta(hours=1)).isoformat(),
            "end": (end + timedelta(hours=6)).isoformat(),
        }
        k = client.get(
            "/kpi", params={"scope": "kecamatan", "id": SCOPE, **period}, headers=ops
        ).json()
        busiest = max(by_crew, key=lambda c: len(by_crew[c]))
        kc = client.get(
            "/kpi", params={"scope": "crew", "id": busiest, **period}, headers=ops
        ).json()

    acks = [a.total_seconds() / 60 for a, _ in expected.values()]
    resolves = [r.total_seconds() / 60 for _, r in expected.values()]
    assert k["incidents"] == len(incidents)
    assert k["ack_minutes"]["count"] == len(incidents)
    assert k["ack_minutes"]["mean"] == pytest.approx(mean(acks))
    assert k["ack_minutes"]["p90"] == pytest.approx(p90(acks))
    assert k["resolve_minutes"]["mean"] == pytest.approx(mean(resolves))
    assert k["backlog"] == 0 and k["reopen_rate_pct"] == 0.0
    # SLA: each incident's two due times against the crews' delays.
    met = sum(
        (inc.opened_at + expected[inc.id][0] <= inc.sla_ack_due)
        + (inc.opened_at + expected[inc.id][1] <= inc.sla_resolve_due)
        for inc in incidents
    )
    assert k["sla_met"] == met and k["sla_missed"] == 2 * len(incidents) - met
    assert kc["ack_minutes"]["mean"] == pytest.approx(
        mean(a.total_seconds() / 60 for a in by_crew[busiest])
    )
