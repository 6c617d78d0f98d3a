"""Escalation of incidents nobody acknowledged in time.

When an open incident's acknowledge-by time (`sla_ack_due`) passes, its agency's
supervisor gets an escalation alert on `{root}/alerts/crews/{supervisor}`; when it is
still unacknowledged one more acknowledge window later (the window is `sla_ack_due -
opened_at`, so 2x the SLA after opening), the operations center gets one on
`{root}/alerts/ops`. Each level is recorded as an `sla` event on the timeline (actor
"rules") and happens once: the store raises the incident's escalation level, writes the
event and enqueues the alert in one transaction, and refuses a level already reached.

Any workflow move out of `open` (acknowledged, suppressed, resolved) stops escalation.
`now` comes from the caller's clock (the rules service's), never from datetime.now().
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from pantau.escalation import (
    LEVEL_STATE,
    OPS,
    SUPERVISOR,
    escalation_dispatch,
    escalation_target,
)
from pantau.store import Dispatch, Incident, IncidentStore
from rules.routing import Router

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationAlert:
    incident_id: int
    level: int  # SUPERVISOR or OPS
    to: str  # the supervisor's crew id, or "ops"
    topic: str
    message_id: int  # the outbox row
    reason: str


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g}"


def _due_level(inc: Incident, now: datetime) -> int:
    window = inc.sla_ack_due - inc.opened_at
    if now >= inc.sla_ack_due + window:
        return OPS
    return SUPERVISOR if now >= inc.sla_ack_due else 0


def escalate_due(
    store: IncidentStore, router: Router, now: datetime, *, root: str = "pantau"
) -> list[EscalationAlert]:
    """Escalate every open, unacknowledged incident that is due at `now`; the alerts
    are in the outbox (publish them with the rest). A service that was down long
    enough sends both levels in order."""
    if now.tzinfo is None:
        raise ValueError("escalate_due() needs a tz-aware time")
    out: list[EscalationAlert] = []
    for inc in store.overdue_unacknowledged(now, below_level=OPS):
        for level in range(inc.escalation_level + 1, _due_level(inc, now) + 1):
            alert = _escalate(store, router, inc, level, now=now, root=root)
            if alert is None:  # acknowledged meanwhile, or another service did it
                break
            out.append(alert)
    return out


def _escalate(
    store: IncidentStore,
    router: Router,
    inc: Incident,
    level: int,
    *,
    now: datetime,
    root: str,
) -> EscalationAlert | None:
    window = inc.sla_ack_due - inc.opened_at
    reason = f"not acknowledged within {_minutes(window * level)} min"
    supervisor = router.roster.supervisors.get(inc.agency or "")
    to, topic = escalation_target(root, level, supervisor)

    def compose(current: Incident) -> Dispatch:
        return escalation_dispatch(current, level=level, to=to, topic=topic, reason=reason, at=now)

    update = store.escalate(
        inc.id, level, at=now, to_state=LEVEL_STATE[level], reason=reason, compose=compose
    )
    if update is None:
        return None
    (message,) = update.outbox
    log.warning("incident %d %s: %s; escalated to %s", inc.id, inc.key, reason, to)
    return EscalationAlert(
        incident_id=inc.id,
        level=level,
        to=to,
        topic=topic,
        message_id=message.id,
        reason=reason,
    )
