"""What a bridge makes of a foreign message: SenML packs for the device topic, retained
statuses, and the InfluxDB points the catalogue has no metric for.

SenML (RFC 8428) rather than the native form: a record carries a number (`v`), a
boolean (`vb`) or a state string (`vs`, e.g. a pump's `running`), and ingest judges
each record on its own, so one bad field of an uplink costs that field only.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridges.relay import Publish
from pantau.devices import Device
from pantau.influx.lineprotocol import EPOCH, MILLISECOND, series_key, tag_value
from pantau.topics import Topics
from pantau.wire import SENML_CONTENT_TYPE, rfc3339

DATA_QUALITY = "data_quality"  # the measurement rules.gaps writes its uplink gaps to
DEVICE_LINK = "device_link"  # radio health per uplink: rssi, snr, frame counter


@dataclass(frozen=True, slots=True)
class Value:
    metric: str
    value: float | bool | str
    unit: str | None = None
    time: datetime | None = None  # None: the pack's time


def millis(when: datetime) -> int:
    return (when - EPOCH) // MILLISECOND


def senml_pack(topics: Topics, device_id: str, when: datetime, values: list[Value]) -> Publish:
    base = millis(when)
    records: list[dict[str, Any]] = []
    for i, v in enumerate(values):
        record: dict[str, Any] = {"n": v.metric}
        if i == 0:
            record = {"bn": f"{device_id}/", "bt": base / 1000, **record}
        if v.time is not None and v.time != when:
            record["t"] = (millis(v.time) - base) / 1000
        if isinstance(v.value, bool):
            record["vb"] = v.value
        elif isinstance(v.value, str):
            record["vs"] = v.value
        else:
            record["v"] = v.value
        if v.unit:
            record["u"] = v.unit
        records.append(record)
    body = json.dumps(records, separators=(",", ":"), allow_nan=False).encode()
    return Publish(topics.sensor_up(device_id), body, SENML_CONTENT_TYPE)


def status(
    topics: Topics,
    device: Device,
    state: str,
    when: datetime,
    *,
    via: str,
    reason: str,
    **extra: Any,
) -> Publish:
    """The retained status the simulator's gateways also publish (contracts.md)."""
    body = {
        "device": device.id,
        "status": state,
        "time": rfc3339(when),
        "gateway": via,
        "kind": device.kind,
        "reason": reason,
        **extra,
    }
    return Publish(
        topics.device_status(device.id),
        json.dumps(body, separators=(",", ":")).encode(),
        retain=True,
    )


def link_line(
    device: Device, network: str, when: datetime, fields: dict[str, float | int | None]
) -> str | None:
    parts = [
        f"{k}={v}i" if isinstance(v, int) else f"{k}={v!r}"
        for k, v in fields.items()
        if v is not None and (isinstance(v, int) or math.isfinite(v))
    ]
    if not parts:
        return None
    return f"{DEVICE_LINK}{_link_tags(device, network)} {','.join(parts)} {millis(when)}"


@functools.cache
def _link_tags(device: Device, network: str) -> str:
    """Per device and network (the registry is fixed for a process's life)."""
    return f"{series_key(device)},network={tag_value(network)}"


def gap_line(
    device_id: str,
    kind: str,
    cause: str,
    *,
    missing: int,
    after: int,
    next_: int,
    since: datetime,
    when: datetime,
) -> str:
    """A data-quality event, with the fields of rules.gaps' uplink gaps."""
    return (
        f"{DATA_QUALITY},device={tag_value(device_id)},kind={kind},cause={cause}"
        f" missing={missing}i,after_seq={after}i,next_seq={next_}i,since_ms={millis(since)}i"
        f" {millis(when)}"
    )
