"""Login throttling and the citizen-report limit shared by every API replica.

With PostgreSQL as the store, N API replicas behind a load balancer count failed logins
and citizen reports in two tables (migration 0007) instead of N memories, so the
allowance is the same with one replica or ten. Rows are keyed by a keyed hash (HMAC
with the API's signing key) of username and address: the tables hold neither in
clear, and expire with the window. SQLite is one process (the embedded default) and
keeps the in-memory versions (api.throttle, api.ratelimit).

Times are the API clock's epoch seconds: replicas run on NTP-synchronised hosts, and
a second of skew changes a delay by a second, never the allowance.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import Engine, case, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from pantau.clock import Clock
from pantau.store.api_tables import LoginFailureRow, RateHitRow

from .ratelimit import RateLimiter
from .throttle import ADDRESS_FACTOR, FORGET_S, Delay, LoginDelays, Reason

PURGE_EVERY_S = 60.0


class _Keyed:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def key(self, *parts: str) -> str:
        return hmac.new(self._secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


class SharedLoginDelays(LoginDelays):
    """`LoginDelays` over the `api_login_failures` table (PostgreSQL)."""

    def __init__(
        self, engine: Engine, free: int, max_delay_s: float, clock: Clock, secret: str
    ) -> None:
        super().__init__(free, max_delay_s, clock)
        self._engine = engine
        self._keys = _Keyed(secret)
        self._purged = 0.0

    def _both(self, username: str, address: str) -> tuple[tuple[str, int, Reason], ...]:
        return (
            (self._keys.key("login", username, address), self.free, Reason.ACCOUNT),
            (self._keys.key("login", address), ADDRESS_FACTOR * self.free, Reason.ADDRESS),
        )

    def wait(self, username: str, address: str) -> Delay | None:
        now = self._clock.now().timestamp()
        keys = self._both(username, address)
        t = LoginFailureRow
        with self._engine.begin() as conn:
            rows = {
                key: (int(count), float(last))
                for key, count, last in conn.execute(
                    select(t.key, t.count, t.last).where(t.key.in_([k for k, _, _ in keys]))
                )
            }
            worst: tuple[float, Reason, str, float] | None = None
            for key, free, reason in keys:
                if key not in rows or now - rows[key][1] >= FORGET_S:
                    continue
                count, last = rows[key]
                left = last + self.delay_after(count, free) - now
                if left > 0 and (worst is None or left > worst[0]):
                    worst = (left, reason, key, last)
            if worst is None:
                return None
            left, reason, key, last = worst
            # One replica audits a delay: the one whose update moves `audited`.
            marked = conn.execute(
                update(t).where(t.key == key, t.audited != last).values(audited=last)
            )
            return Delay(left, reason, marked.rowcount == 1)

    def failed(self, username: str, address: str) -> None:
        now = self._clock.now().timestamp()
        t = LoginFailureRow
        with self._engine.begin() as conn:
            for key, _, _ in self._both(username, address):
                new = insert(t).values(key=key, count=1, last=now, audited=-1.0)
                conn.execute(
                    new.on_conflict_do_update(
                        index_elements=[t.key],
                        set_={
                            # Atomic across replicas: two failures at once count two.
                            "count": case(
                                (new.excluded.last - t.last >= FORGET_S, 1),
                                else_=t.count + 1,
                            ),
                            "last": func.greatest(t.last, new.excluded.last),
                        },
                    )
                )
            if now - self._purged >= PURGE_EVERY_S:
                self._purged = now
                conn.execute(delete(LoginFailureRow).where(LoginFailureRow.last < now - FORGET_S))

    def succeeded(self, username: str, address: str) -> None:
        key = self._keys.key("login", username, address)
        with self._engine.begin() as conn:
            conn.execute(delete(LoginFailureRow).where(LoginFailureRow.key == key))


class SharedRateLimiter(RateLimiter):
    """`RateLimiter` over the `api_rate_hits` table (PostgreSQL): one sliding window per
    client whoever answers it, checked and counted under a transaction-scoped advisory
    lock on the client's bucket (two replicas never both admit the last free hit)."""

    def __init__(
        self, engine: Engine, name: str, limit: int, window_s: float, *, clock: Clock, secret: str
    ) -> None:
        super().__init__(limit, window_s, clock)
        self._engine = engine
        self._name = name
        self._keys = _Keyed(secret)
        self._purged = 0.0

    def _bucket(self, client: str) -> str:
        return self._keys.key("rate", self._name, client)

    def _wait(self, conn_result: tuple[int, float | None], now: float) -> float | None:
        count, first = conn_result
        if count >= self.limit and first is not None:
            return max(1.0, first + self.window_s - now)
        return None

    def allow(self, client: str) -> float | None:
        now = self._clock.now().timestamp()
        bucket = self._bucket(client)
        t = RateHitRow
        with self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(bucket)})
            conn.execute(delete(t).where(t.bucket == bucket, t.at <= now - self.window_s))
            row = conn.execute(select(func.count(), func.min(t.at)).where(t.bucket == bucket))
            count, first = row.one()
            wait = self._wait((int(count), first), now)
            if wait is None:
                conn.execute(insert(RateHitRow).values(bucket=bucket, at=now))
            if now - self._purged >= PURGE_EVERY_S:  # clients that went quiet
                self._purged = now
                conn.execute(delete(t).where(t.at <= now - self.window_s))
            return wait

    def blocked(self, client: str) -> float | None:
        now = self._clock.now().timestamp()
        t = RateHitRow
        with self._engine.begin() as conn:
            row = conn.execute(
                select(func.count(), func.min(t.at)).where(
                    t.bucket == self._bucket(client), t.at > now - self.window_s
                )
            )
            count, first = row.one()
        return self._wait((int(count), first), now)

    def record(self, client: str) -> None:
        now = self._clock.now().timestamp()
        with self._engine.begin() as conn:
            conn.execute(insert(RateHitRow).values(bucket=self._bucket(client), at=now))


def _lock_id(bucket: str) -> int:
    """A signed 64-bit advisory-lock id from the bucket's hex digest."""
    return int.from_bytes(bytes.fromhex(bucket[:16]), "big", signed=True)
