"""A cache of encoded incident lists, valid while no incident event has been written.

Every change an incident list shows (opened, condition, severity, workflow, SLA) appends
a timeline event, in any process, so the newest event id is the list's version: one
primary-key lookup per request instead of a count, a page query and 50 serialisations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from rules.store.models import IncidentEventRow

MAX_ENTRIES = 512


class ListingCache:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._entries: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def version(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.max(IncidentEventRow.id))) or 0)

    def get(self, key: Hashable, version: int) -> bytes | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != version:
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        with self._lock:
            self._entries[key] = (version, body)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
