"""The live city's simulated crews (demo/live.py) on a real incident store: one step
at a time after its delay, and resolved only once the data says it cleared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo.live import step_all
from pantau.clock import ManualClock
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
    WorkflowState,
)
from pantau.store import EventKind, IncidentStore, load_sla_policy, migrate
from tests.unit.test_store import PLACE

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
KEY = DedupKey("flood-level", "kel-cimone", Hazard.FLOOD)


def _change(state: ConditionState, at: datetime) -> ConditionChange:
    active = state is ConditionState.ACTIVE
    return ConditionChange(
        key=KEY,
        state=state,
        severity=Severity.SIAGA if active else None,
        at=at,
        evidence=(
            Evidence(
                device_ids=("wl-cimone-015",),
                metric="water_level",
                peak_value=150.0,
                first_at=at,
                last_at=at,
            )
            if active
            else None
        ),
        reason="water_level 150 cm >= alert 110 cm" if active else "below clear level",
    )


def test_crews_step_after_their_delays_and_resolve_when_cleared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    migrate(url)
    store = IncidentStore(url, load_sla_policy(), ManualClock(T0), place=PLACE)
    inc = store.apply(_change(ConditionState.ACTIVE, T0)).incident
    assert inc is not None
    assert step_all(store, T0 + timedelta(minutes=5)) == 0  # nobody routed: nobody goes
    store.annotate(inc.id, EventKind.ASSIGNMENT, T0, "rules", "routed", assign="bpbd-barat-pagi")

    def state_at(minutes: float) -> WorkflowState:
        step_all(store, T0 + timedelta(minutes=minutes))
        got = store.get(inc.id)
        assert got is not None
        return got.incident.workflow_state

    assert state_at(0.5) is WorkflowState.OPEN
    assert state_at(1.5) is WorkflowState.ACKNOWLEDGED
    assert state_at(2.5) is WorkflowState.ACKNOWLEDGED  # 1 min after acknowledging
    assert state_at(4) is WorkflowState.DISPATCHED
    assert state_at(9.5) is WorkflowState.ON_SITE
    assert state_at(60) is WorkflowState.ON_SITE  # the water is still up
    store.apply(_change(ConditionState.CLEARED, T0 + timedelta(minutes=61)))
    assert state_at(62) is WorkflowState.RESOLVED
    done = store.get(inc.id)
    assert done is not None
    actors = {e.actor for e in done.timeline if e.kind is EventKind.WORKFLOW and e.actor != "rules"}
    assert actors == {"crew:bpbd-barat-pagi"}
    store.close()
