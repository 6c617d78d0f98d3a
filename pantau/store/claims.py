"""Outbox rows sent by one replica at a time: claims with an expiry on the rows.

A rules replica that writes outbox rows claims them for itself in the same transaction
(`mark_mine`) and publishes them right after the commit. Every replica also sweeps: it
claims rows nobody holds, or whose claim ran out because their replica died
(`claim_unpublished`, `claim_notifications`), with `FOR UPDATE SKIP LOCKED` on
PostgreSQL so two sweepers never take the same row and never wait for each other. A
claim outliving a slow send gives a copy under the same message id, never a second id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, bindparam, text
from sqlalchemy.orm import Session

from .leases import db_seconds

_TEMPLATES = {
    "mine": "UPDATE outbox SET publish_owner = :owner, publish_until = {later} WHERE id IN :ids",
    "publish": "UPDATE outbox SET publish_owner = :owner, publish_until = {later}"
    " WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL"
    " AND (publish_until IS NULL OR publish_until <= {now}) ORDER BY id LIMIT :limit{skip})"
    " RETURNING id",
    "notify": "UPDATE outbox SET notify_owner = :owner, notify_until = {later}"
    " WHERE id IN (SELECT id FROM outbox WHERE notify_state = 'pending'"
    " AND (notify_until IS NULL OR notify_until <= {now}) ORDER BY id LIMIT :limit{skip})"
    " RETURNING id",
}
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now'{})"


def _statements(dialect: str) -> dict[str, TextClause]:
    if dialect == "sqlite":  # one writer at a time already (BEGIN IMMEDIATE)
        frag = {"now": _SQLITE_NOW.format(""), "later": _SQLITE_NOW.format(", :ttl"), "skip": ""}
    else:
        frag = {
            "now": "now()",
            "later": "(now() + CAST(:ttl AS double precision) * interval '1 second')",
            "skip": " FOR UPDATE SKIP LOCKED",
        }
    out = {name: text(sql.format(**frag)) for name, sql in _TEMPLATES.items()}
    out["mine"] = out["mine"].bindparams(bindparam("ids", expanding=True))
    return out


class Claims:
    """The claims of one replica (`owner`): `ttl_s` for publishing, `notify_ttl_s` for
    the webhooks (a delivery with its retries must fit in it)."""

    def __init__(self, engine: Engine, owner: str, ttl_s: float, notify_ttl_s: float) -> None:
        self.engine = engine
        self.owner = owner
        dialect = engine.dialect.name
        self._sql = _statements(dialect)
        self._ttl = db_seconds(dialect, ttl_s)
        self._notify_ttl = db_seconds(dialect, notify_ttl_s)

    def mark_mine(self, conn: Connection | Session, ids: Sequence[int]) -> None:
        """In the transaction that wrote the rows: they are this replica's to publish."""
        if ids:
            conn.execute(self._sql["mine"], self._params(self._ttl, ids=list(ids)))

    def claim_unpublished(self, limit: int) -> list[int]:
        return self._claim("publish", self._ttl, limit)

    def claim_notifications(self, limit: int) -> list[int]:
        return self._claim("notify", self._notify_ttl, limit)

    def _claim(self, name: str, ttl: float | str, limit: int) -> list[int]:
        with self.engine.begin() as conn:
            rows = conn.execute(self._sql[name], self._params(ttl, limit=limit))
            return sorted(int(r.id) for r in rows)

    def _params(self, ttl: float | str, **more: Any) -> dict[str, Any]:
        return {"owner": self.owner, "ttl": ttl, **more}


__all__ = ["Claims"]
