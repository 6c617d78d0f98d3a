"""A heap of pending re-judgement times, one per key."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime


class Rechecks:
    """One pending re-judgement time per key (zone, camera), earliest first: a heap
    with lazy deletion, so rescheduling a key is O(log n) and stale entries are skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._at: dict[str, datetime] = {}

    def cancel(self, key: str) -> None:
        self._at.pop(key, None)

    def schedule(self, key: str, when: datetime) -> None:
        self._at[key] = when
        heapq.heappush(self._heap, (when, key))

    def next(self) -> datetime | None:
        while self._heap and self._at.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due(self, at: datetime) -> Iterator[tuple[datetime, str]]:
        """Each (time, key) due by `at`, removed as it is handed out."""
        while (nxt := self.next()) is not None and nxt <= at:
            when, key = heapq.heappop(self._heap)
            del self._at[key]
            yield when, key
