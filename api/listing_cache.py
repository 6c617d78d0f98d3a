"""Caches of incident lists (encoded) and KPIs, valid while no incident event has been
written.

Every change an incident list or a KPI shows (opened, condition, severity, workflow, SLA) appends
a timeline event, in any process, so the incident events' version (`EventVersion`) is
the list's version: one index lookup per request instead of a count, a page query and
50 serialisations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy import Engine, Text, cast, func, literal_column, select
from sqlalchemy.pool import PoolProxiedConnection

from pantau.store.models import IncidentEventRow

from .principal import Principal

MAX_ENTRIES = 512
V = TypeVar("V")


# The list's filters: each may be repeated and means "any of" (a set).
SET_PARAMS = frozenset(
    {
        "kelurahan",
        "kecamatan",
        "zone",
        "agency",
        "crew",
        "hazard",
        "severity",
        "workflow_state",
        "condition_state",
    }
)
SINGLE_PARAMS = frozenset({"active", "opened_from", "opened_to", "limit", "offset"})


def listing_key(who: Principal, query_string: bytes) -> Hashable | None:
    """Same scope + same normalized query = the same list: each filter as a sorted set of
    its values (so `?kecamatan=a&kecamatan=b` and `?kecamatan=b&kecamatan=a` are one
    entry, as they are one answer), parameters in any order, unknown ones left out (the
    route ignores them). A single-valued parameter given twice has no key: the route
    answers 422. Parsed as Starlette parses it, so the route and `CachedListings` agree."""
    values: dict[str, set[str]] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in SET_PARAMS:
            values.setdefault(name, set()).add(value)
        elif name in SINGLE_PARAMS:
            if name in values:
                return None
            values[name] = {value}
    query = tuple(sorted((k, tuple(sorted(v))) for k, v in values.items()))
    return (who.agency, who.kecamatan, query)


def repeated_single(query_string: bytes) -> str | None:
    """The first single-valued parameter given more than once, if any."""
    seen: set[str] = set()
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in SINGLE_PARAMS:
            if name in seen:
                return name
            seen.add(name)
    return None


class EventVersion:
    """What every cached list and KPI is valid for: changes whenever a committed incident
    event becomes visible, read on one dedicated connection (no session, no pool
    checkout: this runs on every request, cache hit or not).

    SQLite: the newest event id. Writers hold the database lock from BEGIN to COMMIT,
    so ids are committed in order and a new visible event always raises the maximum.
    PostgreSQL: ids come from a sequence and commit out of order (a transaction holding
    id 10 can commit after the one holding 11), so the maximum alone could miss an
    event; the current snapshot (`xmin:xmax:in-progress xids`) changes whenever any
    write transaction commits, which covers it. Read-only load leaves both unchanged.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        snapshot = (
            cast(func.pg_current_snapshot(), Text)
            if engine.dialect.name == "postgresql"
            else literal_column("''")
        )
        query = select(func.max(IncidentEventRow.id), snapshot)
        self._sql = str(query.compile(dialect=engine.dialect))
        self._conn: PoolProxiedConnection | None = None
        self._lock = threading.Lock()

    def current(self) -> tuple[int, str]:
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._engine.raw_connection()
                if self._engine.dialect.name == "postgresql":
                    # No transaction left open between requests.
                    conn.driver_connection.autocommit = True  # type: ignore[union-attr]
            try:
                cursor = conn.cursor()
                cursor.execute(self._sql)
                newest, snapshot = cursor.fetchone() or (None, "")
                cursor.close()
            except Exception:
                # A dropped connection: reopen on the next request, fail this one.
                self._conn = None
                conn.invalidate()
                raise
        return int(newest or 0), str(snapshot)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


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
