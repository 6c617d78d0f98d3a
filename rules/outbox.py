"""What the rules service owes the outside world for one incident update, as outbox
messages (pantau.store writes them in the transaction of the change; the service
publishes them and marks them sent after the broker's PUBACK).

    update = store.apply(change, compose=lambda u: change_dispatch(u, change, router, ...))
    for message in store.unpublished(): ...  # publish QoS 1, then store.mark_published

Every message carries `"message_id"`: its outbox row id. A message can be delivered more
than once (a crash after the PUBACK but before it is marked sent), never not at all;
receivers dedupe on the id. On MQTT v5 the id is also the user property `message-id`.
"""

from __future__ import annotations

import json
from typing import Any

from pantau.incidents import ConditionChange
from pantau.store import Dispatch, IncidentUpdate, OutboxKind, Outgoing
from pantau.topics import Topics
from rules import alerts
from rules.routing import Router

MESSAGE_ID_PROPERTY = "message-id"


def json_object(payload: bytes) -> dict[str, Any]:
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise TypeError("an outbox message body is a JSON object")
    return body


def change_dispatch(
    update: IncidentUpdate,
    change: ConditionChange,
    router: Router,
    zone_name: str,
    topics: Topics,
) -> Dispatch:
    """The incident event of an update that changed something, plus the crew alert when
    it opened or got worse. The crew is routed at the change's event time (a rise after
    a shift change goes to the crew now on duty) and kept on the incident."""
    inc = update.incident
    assert inc is not None, "only updates with an incident are dispatched"
    crew = router.route(inc.key.zone_id, inc.key.hazard, change.at)
    messages = [
        Outgoing(
            kind=OutboxKind.EVENT,
            topic=topics.incidents(inc.key.zone_id),
            body=json_object(alerts.incident_event(update, change, crew)),
        )
    ]
    if not alerts.needs_alert(update):
        return Dispatch(routed_crew_id=None, messages=tuple(messages))
    alert = json_object(alerts.crew_alert(update, change, zone_name))
    alert["crew_id"] = crew
    messages.append(
        Outgoing(kind=OutboxKind.ALERT, topic=topics.crew_alerts(crew), body=alert, crew_id=crew)
    )
    return Dispatch(routed_crew_id=crew, messages=tuple(messages))
