"""Escalation alerts: who hears of an incident nobody acknowledged, and what they read.

Two writers raise an incident's escalation level: the rules service when the
acknowledge-by time passes (rules.escalation) and a supervisor or operator by hand
(the API's POST /incidents/{id}/escalate). Both must address the same people on the
same topics with the same message (docs/contracts.md), so the levels, the addresses
and the message live here once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pantau.store import Dispatch, Incident, OutboxKind, Outgoing
from pantau.topics import Topics

SUPERVISOR = 1  # the agency's supervisor
OPS = 2  # the operations center
OPS_ADDRESS = "ops"  # crew_id of an operations-center alert (webhook key too)
LEVEL_STATE = {SUPERVISOR: "escalated_supervisor", OPS: "escalated_ops"}
SCHEMA_VERSION = 1


def ops_topic(root: str) -> str:
    """The operations center's alert topic (second-level escalations)."""
    return f"{root}/alerts/ops"


def escalation_target(root: str, level: int, supervisor: str | None) -> tuple[str, str]:
    """(address, topic) of a level's alert: the agency's supervisor at level 1, the
    operations center at level 2 and for an incident whose agency has no supervisor."""
    if level == SUPERVISOR and supervisor is not None:
        return supervisor, Topics(root).crew_alerts(supervisor)
    return OPS_ADDRESS, ops_topic(root)


def escalation_dispatch(
    current: Incident,
    *,
    level: int,
    to: str,
    topic: str,
    reason: str,
    at: datetime,
    by: str | None = None,
) -> Dispatch:
    """The outbox row of one escalation alert; `by` names the person who escalated by
    hand (absent when the rules service escalated on time)."""
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "alert": "escalation",
        "level": level,
        "to": to,
        "incident_id": current.id,
        "hazard": current.key.hazard.value,
        "severity": current.severity_current.name.lower(),
        "zone_id": current.key.zone_id,
        "agency": current.agency,
        "routed_crew_id": current.routed_crew_id,
        "opened_at": current.opened_at.isoformat(),
        "ack_due": current.sla_ack_due.isoformat(),
        "reason": reason,
    }
    if by is not None:
        body["by"] = by
    body["at"] = at.isoformat()
    message = Outgoing(kind=OutboxKind.ESCALATION, topic=topic, body=body, crew_id=to)
    return Dispatch(routed_crew_id=None, messages=(message,))
