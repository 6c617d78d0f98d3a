"""Leases: several replicas of a stage share units of work through rows in the SQL store.

    leases = Leases(engine, "rules", owner=settings.replica, ttl_s=10)
    held, lost = leases.balance(["kecamatan:cibodas", ...])   # every period_s
    with engine.begin() as conn:
        leases.fence(conn, lease)   # raises LeaseLost unless still mine at this epoch
        ...                         # the write that only the owner may make

One row per unit (kind, key): its owner, an epoch raised at every change of owner, and
an expiry. A replica renews what it holds and takes free or expired keys up to its fair
share (`fair_share`: live = heartbeat younger than ttl), giving back what
exceeds it; a SIGKILLed replica's keys expire after ttl and the survivors take them at
their next balance, so a share moves within ttl + period.

Fencing, not clocks, makes two owners unable to act at once: a write that only the owner
may make first reads its lease row in the same transaction (FOR SHARE on PostgreSQL) and
goes ahead only if owner and epoch are still the ones it acts under. A taker's UPDATE
waits for that transaction and then raises the epoch, so the old owner's next write
fails even if it was frozen past its expiry and never noticed. An expired lease nobody
took is still its owner's (renewing it keeps the epoch).

Times are the database's clock (`now()`), never a replica's. PostgreSQL is the shared
case; SQLite (one file, one writer at a time under BEGIN IMMEDIATE) works the same for
the embedded default and tests.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    kind: str
    key: str
    owner: str
    epoch: int
    expires_at: datetime


class LeaseLost(Exception):
    """The lease is no longer held by this owner at this epoch: stop acting on its key."""

    def __init__(self, lease: Lease, now_owner: str | None, now_epoch: int | None) -> None:
        super().__init__(
            f"lease {lease.kind}/{lease.key} lost by {lease.owner} (epoch {lease.epoch}): "
            f"now {now_owner or 'nobody'} at epoch {now_epoch}"
        )
        self.lease = lease
        self.now_owner = now_owner
        self.now_epoch = now_epoch


# Every statement, with the database clock as {now} and {now}+:ttl / {now}-:ago spelled
# per dialect ({later}, {ago}); only these constant fragments are formatted in.
_TEMPLATES = {
    "heartbeat": "INSERT INTO replicas (kind, name, seen_at) VALUES (:kind, :owner, {now})"
    " ON CONFLICT (kind, name) DO UPDATE SET seen_at = {now}",
    "live": "SELECT name FROM replicas WHERE kind = :kind AND seen_at > {ago} ORDER BY name",
    "leave": "DELETE FROM replicas WHERE kind = :kind AND name = :owner",
    "fence": "SELECT owner, epoch FROM leases WHERE kind = :kind AND key = :key{lock}",
    "renew": "UPDATE leases SET expires_at = {later} WHERE kind = :kind AND key = :key"
    " AND owner = :owner AND epoch = :epoch RETURNING epoch, expires_at",
    "release": "UPDATE leases SET expires_at = {now} WHERE kind = :kind AND key = :key"
    " AND owner = :owner AND epoch = :epoch",
    "busy": "SELECT key FROM leases WHERE kind = :kind AND expires_at > {now} AND owner <> :owner",
    "insert": "INSERT INTO leases (kind, key, owner, epoch, expires_at)"
    " VALUES (:kind, :key, :owner, 1, {later})"
    " ON CONFLICT (kind, key) DO NOTHING RETURNING epoch, expires_at",
    "take": "UPDATE leases SET owner = :owner, epoch = epoch + 1, expires_at = {later}"
    " WHERE kind = :kind AND key = :key AND (expires_at <= {now} OR owner = :owner)"
    " RETURNING epoch, expires_at",
    "holders": "SELECT key, owner, epoch, expires_at FROM leases WHERE kind = :kind ORDER BY key",
}
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now'{})"  # naive UTC text, ms


def _statements(dialect: str) -> dict[str, TextClause]:
    if dialect == "sqlite":
        now = _SQLITE_NOW.format("")
        later, ago, lock = _SQLITE_NOW.format(", :ttl"), _SQLITE_NOW.format(", :ago"), ""
    else:
        now = "now()"
        later = "(now() + CAST(:ttl AS double precision) * interval '1 second')"
        ago = "(now() + CAST(:ago AS double precision) * interval '1 second')"
        lock = " FOR SHARE"
    frag = {"now": now, "later": later, "ago": ago, "lock": lock}
    return {name: text(sql.format(**frag)) for name, sql in _TEMPLATES.items()}


def db_seconds(dialect: str, seconds: float) -> float | str:
    """A number of seconds as the statements above take it (SQLite: a date modifier)."""
    return f"{seconds:+.3f} seconds" if dialect == "sqlite" else seconds


def parse_db_time(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite: naive UTC text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Leases:
    """The leases of one replica (`owner`) for one kind of work."""

    def __init__(self, engine: Engine, kind: str, owner: str, ttl_s: float = 10.0) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl_s}")
        self.engine = engine
        self.kind = kind
        self.owner = owner
        self.ttl_s = ttl_s
        self._sql = _statements(engine.dialect.name)
        self._ttl = db_seconds(engine.dialect.name, ttl_s)
        self._ago = db_seconds(engine.dialect.name, -ttl_s)
        self._held: dict[str, Lease] = {}

    @property
    def held(self) -> dict[str, Lease]:
        """What this replica believes it holds since its last balance."""
        return dict(self._held)

    def heartbeat(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._sql["heartbeat"], {"kind": self.kind, "owner": self.owner})

    def live_replicas(self) -> list[str]:
        """Replicas of this kind whose heartbeat is younger than the ttl, sorted."""
        with self.engine.begin() as conn:
            rows = conn.execute(self._sql["live"], {"kind": self.kind, "ago": self._ago})
            return [r.name for r in rows]

    def balance(
        self,
        keys: Sequence[str],
        before_release: Callable[[list[str]], None] | None = None,
    ) -> tuple[list[Lease], list[str]]:
        """Heartbeat, renew what I hold, give back what exceeds my fair share, take free
        or expired keys up to it. Returns (held now, keys lost or given back since the
        last balance); the caller stops acting on the lost ones.

        A key given back is anyone's at once, so a caller without a fence in its writes
        (vision's analyses) passes `before_release`: it is called with the keys about to
        be given back and must have stopped acting on them when it returns. If it raises,
        nothing is given back (the keys stay held)."""
        wanted = sorted(set(keys))
        self.heartbeat()
        share = self.fair_share(len(wanted), self.live_replicas())
        lost: list[str] = []
        give_back: list[Lease] = []
        for key, lease in sorted(self._held.items()):
            if key not in wanted:
                give_back.append(lease)
                continue
            renewed = self._renew(lease)
            if renewed is None:
                del self._held[key]
                lost.append(key)
                logger.warning("%s lost lease %s/%s", self.owner, self.kind, key)
            else:
                self._held[key] = renewed
        kept = sorted(k for k in self._held if k in wanted)
        give_back += [self._held[key] for key in kept[share:]]
        if give_back:
            if before_release is not None:
                before_release([lease.key for lease in give_back])
            for lease in give_back:
                del self._held[lease.key]
                lost.append(lease.key)
                self._release(lease)
        if len(self._held) < share:
            for key in self._takeable(wanted):
                if len(self._held) >= share:
                    break
                taken = self._take(key)
                if taken is not None:
                    self._held[key] = taken
                    logger.info(
                        "%s took lease %s/%s at epoch %d", self.owner, self.kind, key, taken.epoch
                    )
        return sorted(self._held.values(), key=lambda x: x.key), lost

    def fair_share(self, keys: int, live: Sequence[str]) -> int:
        """keys // live, one more for the first keys % live replicas by name: the shares
        add up to exactly the keys, so the replicas settle evenly (13 over 3: 5, 4, 4)."""
        if self.owner not in live:
            live = [*live, self.owner]
        ranked = sorted(live)
        base, extra = divmod(keys, len(ranked))
        return base + (1 if ranked.index(self.owner) < extra else 0)

    def release(self, lease: Lease) -> None:
        """Give a lease back now (it is anyone's at once); stop acting on it first."""
        self._held.pop(lease.key, None)
        self._release(lease)

    def release_all(self) -> None:
        """At a clean stop: give everything back and leave the live set at once."""
        for lease in list(self._held.values()):
            self.release(lease)
        with self.engine.begin() as conn:
            conn.execute(self._sql["leave"], {"kind": self.kind, "owner": self.owner})

    def fence(self, conn: Connection | Session, lease: Lease) -> None:
        """In the caller's transaction: raise LeaseLost unless `lease` is still this
        owner's at this epoch. On PostgreSQL the row stays share-locked until the
        transaction ends, so no taker can raise the epoch under the write."""
        row = conn.execute(self._sql["fence"], {"kind": lease.kind, "key": lease.key}).first()
        if row is None or row.owner != lease.owner or int(row.epoch) != lease.epoch:
            if row is None:
                raise LeaseLost(lease, None, None)
            raise LeaseLost(lease, row.owner, int(row.epoch))

    def holders(self) -> list[Lease]:
        """Every lease of this kind (owner, epoch, expiry), by key: who holds what."""
        return holders(self.engine, self.kind)

    # -- single statements, each in its own short transaction ---------------------------

    def _one(self, name: str, key: str, **more: Any) -> Lease | None:
        params = {"kind": self.kind, "key": key, "owner": self.owner, "ttl": self._ttl, **more}
        with self.engine.begin() as conn:
            row = conn.execute(self._sql[name], params).first()
        if row is None:
            return None
        return Lease(self.kind, key, self.owner, int(row.epoch), parse_db_time(row.expires_at))

    def _renew(self, lease: Lease) -> Lease | None:
        return self._one("renew", lease.key, epoch=lease.epoch)

    def _release(self, lease: Lease) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self._sql["release"],
                {"kind": self.kind, "key": lease.key, "owner": self.owner, "epoch": lease.epoch},
            )
        logger.info("%s gave back lease %s/%s", self.owner, self.kind, lease.key)

    def _takeable(self, wanted: list[str]) -> list[str]:
        """Keys not held by a live owner (missing, expired, or mine from an earlier run
        under the same name), starting at a place of this owner's own so replicas do not
        all race for the same first key."""
        with self.engine.begin() as conn:
            rows = conn.execute(self._sql["busy"], {"kind": self.kind, "owner": self.owner})
            busy = {r.key for r in rows}
        free = [k for k in wanted if k not in busy and k not in self._held]
        if not free:
            return free
        start = zlib.crc32(self.owner.encode()) % len(free)
        return free[start:] + free[:start]

    def _take(self, key: str) -> Lease | None:
        return self._one("insert", key) or self._one("take", key)


def holders(engine: Engine, kind: str) -> list[Lease]:
    """Every lease of `kind` as the database has it, by key."""
    sql = _statements(engine.dialect.name)["holders"]
    with engine.begin() as conn:
        rows = conn.execute(sql, {"kind": kind})
        return [
            Lease(kind, r.key, r.owner, int(r.epoch), parse_db_time(r.expires_at)) for r in rows
        ]


__all__ = ["Lease", "LeaseLost", "Leases", "db_seconds", "holders", "parse_db_time"]
