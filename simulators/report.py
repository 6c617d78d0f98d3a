"""What a run published: the ground truth an end-to-end test checks InfluxDB and the
dead-letter topics against."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from simulators.messages import SimMessage


class ReadingKey(NamedTuple):
    """A point's identity in InfluxDB: a replay overwrites it instead of duplicating."""

    device_id: str
    metric: str
    time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MalformedMessage:
    topic: str
    payload: bytes
    content_type: str
    reason: str  # the dead-letter reason ingest must give
    rejections: int  # dead letters it must emit for this message
    device_id: str  # the device that sent it (the topic may name another)
    sim_time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SimReport:
    scenario: str
    seed: int
    start: datetime  # simulated start actually used
    end: datetime
    speed: float | None  # None: as fast as the broker takes it
    completed: bool  # False if stopped early
    messages: int  # sensor messages published (valid and malformed)
    dropped: int  # messages a dropout fault swallowed
    valid_by_device: Mapping[str, int]  # device id -> valid readings published
    # What InfluxDB must hold. Usually one key per valid reading; fewer only if a device's
    # clock jumps back onto times it already sent (a valid clock_skew fault ending), when
    # the later reading overwrites the earlier one, as it would in the field.
    reading_keys: frozenset[ReadingKey]
    malformed: tuple[MalformedMessage, ...]
    status_messages: int  # retained birth / death messages
    acknowledged: int  # PUBACKs received (sensor and status messages)
    failed: int  # PUBACKs with an error reason code, or never received
    digest: str  # sha256 over every (topic, payload) in send order
    wall_s: float

    @property
    def valid_readings(self) -> int:
        return sum(self.valid_by_device.values())

    @property
    def reasons(self) -> Counter[str]:
        return Counter(m.reason for m in self.malformed)

    @property
    def expected_rejections(self) -> int:
        return sum(m.rejections for m in self.malformed)

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items())) or "none"
        rate = self.messages / self.wall_s if self.wall_s > 0 else 0.0
        speed = "max" if self.speed is None else f"x{self.speed:g}"
        return "\n".join(
            [
                f"scenario {self.scenario} (seed {self.seed}, speed {speed}): "
                f"{self.start.isoformat()} .. {self.end.isoformat()}"
                + ("" if self.completed else "  [stopped early]"),
                f"  messages {self.messages} ({rate:.0f}/s over {self.wall_s:.1f}s), "
                f"dropped by faults {self.dropped}",
                f"  valid readings {self.valid_readings} from {len(self.valid_by_device)} devices",
                f"  malformed {len(self.malformed)}: {reasons}",
                f"  status messages {self.status_messages}; PUBACKs {self.acknowledged}, "
                f"failed {self.failed}",
                f"  digest {self.digest}",
            ]
        )


@dataclass(slots=True)
class ReportBuilder:
    """Accumulates a report message by message, as they are published."""

    valid_by_device: Counter[str] = field(default_factory=Counter)
    keys: set[ReadingKey] = field(default_factory=set)
    malformed: list[MalformedMessage] = field(default_factory=list)
    messages: int = 0
    last_sim_time: datetime | None = None
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def add(self, msg: SimMessage) -> None:
        self.messages += 1
        self.last_sim_time = msg.sim_time
        self._digest.update(msg.topic.encode())
        self._digest.update(b"\0")
        self._digest.update(msg.payload)
        self._digest.update(b"\0")
        if msg.metrics:
            self.valid_by_device[msg.device_id] += len(msg.metrics)
            device, when = msg.device_id, msg.reading_time
            self.keys.update(ReadingKey(device, m, when) for m in msg.metrics)
        if msg.expected_reason is not None:
            self.malformed.append(
                MalformedMessage(
                    topic=msg.topic,
                    payload=msg.payload,
                    content_type=msg.content_type,
                    reason=msg.expected_reason,
                    rejections=msg.expected_rejections,
                    device_id=msg.device_id,
                    sim_time=msg.sim_time,
                )
            )

    def add_all(self, messages: Iterable[SimMessage]) -> ReportBuilder:
        for msg in messages:
            self.add(msg)
        return self

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()
