"""Caches of incident lists (encoded) and KPIs, valid while no incident event has been
written.

Every change an incident list or a KPI shows (opened, condition, severity, workflow, SLA) appends
a timeline event, in any process, so the newest event id is the list's version: one
primary-key lookup per request instead of a count, a page query and 50 serialisations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from rules.store.models import IncidentEventRow

MAX_ENTRIES = 512
V = TypeVar("V")


def newest_event_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.max(IncidentEventRow.id))) or 0)


class VersionedCache(Generic[V]):
    """A bounded LRU whose entries hold while their version is the caller's."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, tuple[Hashable, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != version:
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, version: Hashable, value: V) -> None:
        with self._lock:
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
