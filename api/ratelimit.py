"""A sliding-window limit per client, in memory: enough for one API process (SQLite);
API replicas on PostgreSQL share one in the database (api.shared_limits)."""

from __future__ import annotations

import threading
from collections import defaultdict, deque

from pantau.clock import Clock


class RateLimiter:
    def __init__(self, limit: int, window_s: float, clock: Clock) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, client: str) -> float | None:
        """None if the client may go ahead (and counts the hit), else seconds to wait."""
        now = self._clock.now().timestamp()
        with self._lock:
            hits = self._hits[client]
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window_s - now)
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle clients rather than grow forever
                for k in [k for k, v in self._hits.items() if not v]:
                    del self._hits[k]
            return None

    def blocked(self, client: str) -> float | None:
        """Seconds to wait if the client is over the limit, without counting a hit."""
        now = self._clock.now().timestamp()
        with self._lock:
            hits = self._hits.get(client)
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if hits is not None and len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window_s - now)
            return None

    def record(self, client: str) -> None:
        """Count one hit (a failed login, say) whatever the limit says."""
        with self._lock:
            self._hits[client].append(self._clock.now().timestamp())
