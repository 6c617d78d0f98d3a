"""End to end: the storm scenario through the default rules into the incident store,
simulated crews answering their alerts through the API with realistic delays, and the
KPIs the API computes matching what the crews did.

Each incident goes to the crew the router names (or the agency supervisor off-shift).
The crews are `demo.crews` (the demo's too): a crew acknowledges after 2-12
minutes (one in five is slow: 20-40), dispatches itself, is on site 15 minutes later and
resolves 30-150 minutes after opening once the condition cleared (and stays while it
is active), through the API served on loopback. The API's
clock follows the simulated time, so timeline times are the crews' times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean

import pytest

from api.context import ApiContext, build_context
from api.kpi import p90
from api.principal import Principal, Role
from demo.apiserver import HttpApi, serve
from demo.crews import all_incidents, answer, plan_answers, steps, token_for
from pantau.clock import ManualClock
from pantau.devices import default_config_dir
from pantau.incidents import ConditionChange, ConditionState
from pantau.zoneindex import ZoneIndex
from rules.engine import RuleEngine
from rules.routing import Router
from rules.rulespec import load_rules
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
    incidents = all_incidents(ctx)
    assert len(incidents) >= 5, "the storm should raise several incidents"
    assert {ctx.geo.kecamatan_of(i.key.zone_id) for i in incidents} == {SCOPE}
    answers = plan_answers(
        incidents,
        lambda i: router.route(i.key.zone_id, i.key.hazard, i.opened_at),
        supervisors=frozenset(ctx.roster.supervisors.values()),
    )
    assert len(answers) == len(incidents)
    expected = {a.incident_id: (a.ack_after, a.resolve_after) for a in answers}
    by_crew: defaultdict[str, list[timedelta]] = defaultdict(list)
    for a in answers:
        by_crew[a.crew].append(a.ack_after)
    ops = token_for(ctx, Principal(subject="ops", role=Role.OPERATOR))
    with serve(ctx) as url:
        api = HttpApi(url)
        assert answer(api, ctx, clock, answers) == len(steps(answers))
        clock.set(end + timedelta(days=1))
        period = {
            "start": (start - timedelta(hours=1)).isoformat(),
            "end": (end + timedelta(hours=6)).isoformat(),
        }
        k = api.get("/kpi", ops, {"scope": "kecamatan", "id": SCOPE, **period})
        busiest = max(by_crew, key=lambda c: len(by_crew[c]))
        kc = api.get("/kpi", ops, {"scope": "crew", "id": busiest, **period})

    acks = [a.total_seconds() / 60 for a, _ in expected.values()]
    resolves = [r.total_seconds() / 60 for _, r in expected.values() if r is not None]
    unresolved = [i for i in incidents if expected[i.id][1] is None]
    # Crews stay while the condition is still active (demo.crews): those are the backlog.
    assert {i.id for i in unresolved} == {
        i.id for i in incidents if i.condition_state is ConditionState.ACTIVE
    }
    assert k["incidents"] == len(incidents)
    assert k["ack_minutes"]["count"] == len(incidents)
    assert k["ack_minutes"]["mean"] == pytest.approx(mean(acks))
    assert k["ack_minutes"]["p90"] == pytest.approx(p90(acks))
    assert k["resolve_minutes"]["mean"] == pytest.approx(mean(resolves))
    assert k["backlog"] == len(unresolved) and k["reopen_rate_pct"] == 0.0
    # SLA: each incident's two due times against the crews' delays; a resolution that
    # never came is missed once its due time is before the period's end.
    as_of = end + timedelta(hours=6)
    met = missed = 0
    for inc in incidents:
        ack, res = expected[inc.id]
        met += inc.opened_at + ack <= inc.sla_ack_due
        missed += inc.opened_at + ack > inc.sla_ack_due
        if res is not None:
            met += inc.opened_at + res <= inc.sla_resolve_due
            missed += inc.opened_at + res > inc.sla_resolve_due
        else:
            missed += inc.sla_resolve_due < as_of
    assert k["sla_met"] == met and k["sla_missed"] == missed
    assert kc["ack_minutes"]["mean"] == pytest.approx(
        mean(a.total_seconds() / 60 for a in by_crew[busiest])
    )
