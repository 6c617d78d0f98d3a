"""Camera evidence on disk, bounded: by age and by total size, never at the cost of a
frame an incident still needs.

`pantau vision` saves `<evidence_dir>/<camera>/<YYYYmmddTHHMMSS.fffZ>-<reason>.jpg`;
the API shows an incident the frames of its cameras from `FRAME_LOOKBACK` before its
evidence began to when it ended. A sweep deletes frames older than
`retention.evidence_days`, then the oldest frames while the directory holds more than
`retention.evidence_max_bytes`, but never a frame linked to an incident opened within
the evidence retention or still not ended: if only such frames are left, the directory
stays over its bound and the sweep says so (a warning and `over_budget`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from pantau.incidents import WorkflowState
from pantau.store.models import IncidentRow

log = logging.getLogger(__name__)

FRAME_LOOKBACK = timedelta(minutes=10)  # api.evidence shows frames this long before
_FRAME = re.compile(r"^([0-9]{8}T[0-9]{6})\.([0-9]{3})Z-[a-z-]+\.jpg$")
Windows = Mapping[str, Sequence[tuple[datetime, datetime]]]


def frame_time(name: str) -> datetime | None:
    m = _FRAME.match(name)
    if m is None:
        return None
    t = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return t + timedelta(milliseconds=int(m.group(2)))


def protected_windows(engine: Engine, *, now: datetime, keep: timedelta) -> Windows:
    """Per camera, the time windows of frames that incidents opened within `keep` of
    `now`, or not yet ended, link to."""
    ended = (WorkflowState.RESOLVED, WorkflowState.CLOSED)
    q = select(
        IncidentRow.evidence_device_ids, IncidentRow.evidence_first_at, IncidentRow.evidence_last_at
    ).where(or_(IncidentRow.opened_at >= now - keep, IncidentRow.workflow_state.not_in(ended)))
    out: defaultdict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    with engine.connect() as conn:
        for devices, first, last in conn.execute(q):
            for device in filter(None, str(devices).split(",")):
                out[device].append((first - FRAME_LOOKBACK, last))
    return out


@dataclass(slots=True)
class Sweep:
    deleted: int = 0
    freed_bytes: int = 0
    kept_bytes: int = 0
    kept_protected: int = 0
    over_budget: bool = False


def sweep(
    directory: Path, *, now: datetime, max_age: timedelta, max_bytes: int, protected: Windows
) -> Sweep:
    """Delete what is past the bounds (see the module); what it did."""
    frames: list[tuple[datetime, Path, int, bool]] = []
    if directory.is_dir():
        for path in directory.glob("*/*.jpg"):
            t = frame_time(path.name)
            if t is None:
                continue  # not a frame Pantau wrote: not ours to delete
            linked = any(a <= t <= b for a, b in protected.get(path.parent.name, ()))
            frames.append((t, path, path.stat().st_size, linked))
    frames.sort()
    result = Sweep()
    total = sum(size for _, _, size, _ in frames)
    for t, path, size, linked in frames:
        too_old = t < now - max_age
        if not too_old and total <= max_bytes:
            break  # frames are oldest first: the rest are young and fit
        if linked:
            result.kept_protected += 1
            continue
        path.unlink(missing_ok=True)
        result.deleted += 1
        result.freed_bytes += size
        total -= size
    result.kept_bytes = total
    result.over_budget = total > max_bytes
    if result.over_budget:
        log.warning(
            "evidence: %d bytes kept, over the %d byte bound: only frames of recent or "
            "open incidents are left",
            total,
            max_bytes,
        )
    return result


class EvidenceSweeper:
    """Sweeps `directory` every `interval_s` in a thread (in `pantau vision`)."""

    def __init__(
        self,
        directory: Path,
        engine: Engine,
        *,
        keep: timedelta,
        max_bytes: int,
        interval_s: float,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._dir, self._engine, self._keep, self._max = directory, engine, keep, max_bytes
        self._interval = interval_s
        self._now = now or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="evidence-sweep", daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            try:
                windows = protected_windows(self._engine, now=now, keep=self._keep)
                s = sweep(
                    self._dir, now=now, max_age=self._keep, max_bytes=self._max, protected=windows
                )
                if s.deleted:
                    log.info("evidence: deleted %d frames (%d bytes)", s.deleted, s.freed_bytes)
            except SQLAlchemyError as err:  # no store yet, or unreachable: keep everything
                log.warning("evidence sweep skipped, incident store unreadable: %s", err)
            except OSError as err:  # a sweep that fails must not stop the cameras
                log.warning("evidence sweep failed; next one in %.0f s: %s", self._interval, err)
            self._stop.wait(self._interval)
