"""A live city after the demo (`--keep`): the storm again, in real time from now, with
ingest and the rules service running on the wall clock and simulated crews at work,
so the pages, feeds and Grafana show active incidents, moving readings and crews
acknowledging, going out and resolving as the water goes down.

The crews act through the incident store with their own actor (`crew:<id>`), one step
at a time after a field-like delay: acknowledge, set out, arrive, and resolve only once
the data says the condition has cleared. Everything stops with the demo (Ctrl-C).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from ingest.service import IngestService
from pantau.city import City
from pantau.incidents import ConditionState, WorkflowState
from pantau.influx.writers import make_writer
from pantau.roster import load_roster
from pantau.settings import RulesSettings, Settings
from pantau.store import IncidentStore, InvalidTransition
from pantau.zoneindex import ZoneIndex
from rules.routing import Router
from rules.service import RulesService, make_store
from simulators.publisher import run_scenario
from simulators.scenario import Scenario

log = logging.getLogger(__name__)

CREW_EVERY_S = 15.0
# How long after its last move a crew takes the next step (field-like, not instant).
NEXT_STEP_AFTER = {
    WorkflowState.OPEN: timedelta(minutes=1),
    WorkflowState.ACKNOWLEDGED: timedelta(minutes=2),
    WorkflowState.DISPATCHED: timedelta(minutes=5),
}


@contextmanager
def live_city(
    settings: Settings, city: City, zones: ZoneIndex, scenario: Scenario
) -> Iterator[str]:
    """Run the live city while the block runs; yields the summary's line about it."""
    live = settings.model_copy(update={"rules": RulesSettings()})  # ticks on the wall clock
    ingest = IngestService(live, city, make_writer(live.influx))
    store = make_store(live, zones)
    rules = RulesService(live, city, store, Router(load_roster(city), zones), zones)
    ingest.start()
    rules.start()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        if not (ingest.wait_subscribed(15) and rules.wait_subscribed(15)):
            yield "Live city: the services could not subscribe; the pages show the storm's end."
            return
        start = datetime.now(UTC).replace(microsecond=0)

        def fleet() -> None:
            run_scenario(city, scenario, live.mqtt, speed=1.0, stop=stop, start=start)

        threads = [
            threading.Thread(target=fleet, name="live-fleet", daemon=True),
            threading.Thread(
                target=crews_at_work, args=(store, stop), name="live-crews", daemon=True
            ),
        ]
        for t in threads:
            t.start()
        hours = scenario.duration_s / 3600
        yield (
            f"\nLive city: {scenario.name!r} plays again in real time from now "
            f"({hours:g} h, {len(city.devices)} devices); the rules judge it on the wall "
            "clock and simulated crews acknowledge, go out and resolve what clears, so "
            "the pages, feeds and Grafana show active incidents and moving readings."
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        ingest.stop()
        rules.stop()
        store.close()


def crews_at_work(store: IncidentStore, stop: threading.Event) -> None:
    while not stop.wait(CREW_EVERY_S):
        try:
            step_all(store, datetime.now(UTC))
        except Exception:  # a live demo's crew never takes the services down
            log.exception("live crews")


def step_all(store: IncidentStore, now: datetime) -> int:
    """Move each routed active incident one step when its delay has passed; the count."""
    moved = 0
    for inc in store.active():
        crew = inc.assignee_crew_id or inc.routed_crew_id
        if crew is None:
            continue
        state = inc.workflow_state
        detail = store.get(inc.id)
        last = detail.timeline[-1].at if detail and detail.timeline else inc.opened_at
        wait = NEXT_STEP_AFTER.get(state)
        if state is WorkflowState.ON_SITE:
            if inc.condition_state is not ConditionState.CLEARED:
                continue
            to, reason = WorkflowState.RESOLVED, "receded: air surut, saluran dipantau"
        elif wait is None or now - last < wait:
            continue
        else:
            to, reason = _NEXT[state]
        try:
            store.transition(inc.id, to, f"crew:{crew}", reason, now, crew_id=crew)
            moved += 1
        except InvalidTransition:
            continue  # an operator moved it meanwhile
    return moved


_NEXT = {
    WorkflowState.OPEN: (WorkflowState.ACKNOWLEDGED, "acknowledged"),
    WorkflowState.ACKNOWLEDGED: (WorkflowState.DISPATCHED, "on the way"),
    WorkflowState.DISPATCHED: (WorkflowState.ON_SITE, "crew on site"),
}
