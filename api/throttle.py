"""Login throttling that cannot be turned against a user.

Failures are counted per (username, address) and per address, never per username
alone: knowing a crew's username and failing from one address delays attempts from
that address only, and the crew logs in from its phone as usual. Past a free allowance
each further attempt waits 1, 2, 4 ... seconds (capped) after the last failure; the
password is not even checked while a wait runs, so the right one does not tell. Fifteen
minutes without a failure forget them; a successful login forgets the (username,
address) count, not the address's.

In memory here, for one API process (SQLite); with PostgreSQL every replica counts in
the database instead (api.shared_limits), so replicas do not multiply the allowance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum

from pantau.clock import Clock

FORGET_S = 900.0
MAX_KEYS = 100_000
ADDRESS_FACTOR = 4  # an address may fail this many times more, over all usernames


class Reason(StrEnum):
    ACCOUNT = "account"  # this username from this address
    ADDRESS = "address"  # anything from this address


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    audited: float = -1.0  # `last` of the delay already written to the audit log


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float
    reason: Reason
    first: bool  # the first refusal of this delay (audit it once, not per attempt)


class LoginDelays:
    def __init__(self, free: int, max_delay_s: float, clock: Clock) -> None:
        self.free = free
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._failures: dict[tuple[str, ...], _Failures] = {}
        self._lock = threading.Lock()

    def delay_after(self, failures: int, free: int) -> float:
        """Seconds an attempt waits after the last of `failures` failures."""
        if failures < free:
            return 0.0
        return float(min(self.max_delay_s, 2 ** min(failures - free, 30)))

    def wait(self, username: str, address: str) -> Delay | None:
        """None if this attempt may check its password now."""
        now = self._clock.now().timestamp()
        keys = (
            ((username, address), self.free, Reason.ACCOUNT),
            ((address,), ADDRESS_FACTOR * self.free, Reason.ADDRESS),
        )
        with self._lock:
            worst: tuple[float, Reason, _Failures] | None = None
            for key, free, reason in keys:
                f = self._failures.get(key)
                if f is None or now - f.last >= FORGET_S:
                    continue
                left = f.last + self.delay_after(f.count, free) - now
                if left > 0 and (worst is None or left > worst[0]):
                    worst = (left, reason, f)
            if worst is None:
                return None
            left, reason, f = worst
            first = f.audited != f.last
            f.audited = f.last
            return Delay(left, reason, first)

    def failed(self, username: str, address: str) -> None:
        now = self._clock.now().timestamp()
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                self._forget_old(now)
            for key in ((username, address), (address,)):
                f = self._failures.setdefault(key, _Failures())
                if now - f.last >= FORGET_S:
                    f.count = 0
                f.count += 1
                f.last = now

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username, address), None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, f in self._failures.items() if now - f.last >= FORGET_S]:
            del self._failures[key]
        if len(self._failures) >= MAX_KEYS:  # all recent: a flood of addresses
            self._failures.clear()
