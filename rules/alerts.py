"""What the rules service publishes: incident events and crew alerts, as JSON.

`{root}/incidents/{zone_id}`: every store update that changed something (opened,
updated, cleared), the incident's whole current state plus the change's reason.
`{root}/alerts/crews/{crew_id}`: to the routed crew when an incident opens or its
severity rises: short, what a crew needs to move.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pantau.incidents import ConditionChange, Severity
from pantau.store import EventKind, Incident, IncidentUpdate, UpdateKind

SCHEMA_VERSION = 1


def _ts(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _severity(name: str | None) -> Severity | None:
    return Severity[name.upper()] if name else None


def severity_rose(update: IncidentUpdate) -> bool:
    """True if this update raised the incident's current severity."""
    for e in update.events:
        if e.kind is EventKind.SEVERITY:
            before, after = _severity(e.from_state), _severity(e.to_state)
            if before is not None and after is not None and after > before:
                return True
    return False


def needs_alert(update: IncidentUpdate) -> bool:
    """Crews hear of an incident when it opens and whenever it gets worse."""
    return update.incident is not None and (
        update.kind is UpdateKind.OPENED or severity_rose(update)
    )


def incident_event(update: IncidentUpdate, change: ConditionChange, crew_id: str) -> bytes:
    inc = update.incident
    assert inc is not None, "only updates with an incident are published"
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "update": update.kind.value,
        "incident_id": inc.id,
        "key": str(inc.key),
        "rule_id": inc.key.rule_id,
        "zone_id": inc.key.zone_id,
        "zone_level": inc.zone_level,
        "hazard": inc.key.hazard.value,
        "condition_state": inc.condition_state.value,
        "condition_at": _ts(inc.condition_at),
        "workflow_state": inc.workflow_state.value,
        "severity": {
            "current": inc.severity_current.name.lower(),
            "max": inc.severity_max.name.lower(),
        },
        "agency": inc.agency,
        "crew_id": crew_id,
        "evidence": _evidence(inc),
        "opened_at": _ts(inc.opened_at),
        "sla": {"ack_due": _ts(inc.sla_ack_due), "resolve_due": _ts(inc.sla_resolve_due)},
        "reason": change.reason,
        "at": _ts(change.at),
        "events": [
            {"seq": e.seq, "kind": e.kind.value, "from": e.from_state, "to": e.to_state}
            for e in update.events
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def crew_alert(update: IncidentUpdate, change: ConditionChange, zone_name: str) -> bytes:
    inc = update.incident
    assert inc is not None, "only updates with an incident are alerted"
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "alert": "opened" if update.kind is UpdateKind.OPENED else "severity_rose",
        "incident_id": inc.id,
        "hazard": inc.key.hazard.value,
        "severity": inc.severity_current.name.lower(),
        "zone_id": inc.key.zone_id,
        "zone_name": zone_name,
        "agency": inc.agency,
        "devices": list(inc.evidence.device_ids),
        "metric": inc.evidence.metric,
        "peak_value": inc.evidence.peak_value,
        "reason": change.reason,
        "at": _ts(change.at),
        "ack_due": _ts(inc.sla_ack_due),
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _evidence(inc: Incident) -> dict[str, Any]:
    ev = inc.evidence
    return {
        "device_ids": list(ev.device_ids),
        "metric": ev.metric,
        "peak_value": ev.peak_value,
        "first_at": _ts(ev.first_at),
        "last_at": _ts(ev.last_at),
    }
