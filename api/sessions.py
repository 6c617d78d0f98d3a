"""Whether a token's session still holds: the user is active and their role, scope and
session version are still those the token was issued with.

A token is signed for 8 hours; a user may be deactivated or moved to another kecamatan
within them. Each user's state is read at most every `api.session_check_s` seconds
(<= 60) per process, so a change reaches every request within that time for one
indexed lookup per user and period, not one per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .accounts import UserSession
from .security import Bearer

MAX_USERS = 10_000


class SessionCheck:
    def __init__(self, load: Callable[[str], UserSession | None], ttl_s: float) -> None:
        self._load = load
        self._ttl = ttl_s
        self._known: dict[str, tuple[float, UserSession | None]] = {}
        self._lock = threading.Lock()

    def cached(self, bearer: Bearer) -> bool | None:
        """True/False if the user's state is fresh enough to answer; None: ask `check`
        (SQL, so from a thread)."""
        hit = self._known.get(bearer.principal.subject)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            return None
        return _holds(hit[1], bearer)

    def check(self, bearer: Bearer) -> bool:
        subject = bearer.principal.subject
        current = self._load(subject)
        with self._lock:
            if len(self._known) >= MAX_USERS:
                self._known.clear()
            self._known[subject] = (time.monotonic(), current)
        return _holds(current, bearer)


def _holds(current: UserSession | None, bearer: Bearer) -> bool:
    return (
        current is not None
        and current.version == bearer.version
        and current.principal == bearer.principal
    )
