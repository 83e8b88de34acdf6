"""Which incoming events may already be stored: a bounded, in-memory filter in front of the duplicate check.

An event id fixes its event's timestamp, and retried batches arrive soon after their
originals, so the store remembers the ids of what it stored recently: every stored
event whose timestamp is at or after ``floor`` has its id in the filter. An event at
or after the floor whose id is not there is certainly new; every other event (older
than the floor, or matching an id) is a candidate that the store checks in its table.
When the filter is full, it forgets the oldest timestamps and raises the floor past
them, so memory stays bounded and the answer stays exact, only slower for old events.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

DEFAULT_CAPACITY = 100_000
"""About 17 MB: the last five seconds at 20,000 events/s, hours at a typical server's rate."""


class RecentIds:
    def __init__(self, floor_us: int, capacity: int = DEFAULT_CAPACITY) -> None:
        """``floor_us``: a timestamp (µs) after every event already stored, e.g. the newest one's plus one."""
        self.floor_us = floor_us
        self.capacity = capacity
        self._ids: dict[int, int] = {}  # id hash -> how many remembered events have it (hashes may collide)
        self._by_time: list[tuple[int, int]] = []  # a heap of (timestamp, id hash)

    def __len__(self) -> int:
        return len(self._by_time)

    @staticmethod
    def key(project: str, event_id: str) -> int:
        """The filter keeps 64-bit hashes, not strings (a collision only sends an event to the table check)."""
        return hash((project, event_id))

    def may_be_stored(self, key: int, ts_us: int) -> bool:
        return ts_us < self.floor_us or key in self._ids

    def remember(self, stored: Iterable[tuple[int, int]]) -> None:
        """Record committed events, as ``(key, timestamp µs)``; forget the oldest past the capacity."""
        for key, ts_us in stored:
            if ts_us >= self.floor_us:
                self._ids[key] = self._ids.get(key, 0) + 1
                heapq.heappush(self._by_time, (ts_us, key))
        while len(self._by_time) > self.capacity:
            ts_us, key = heapq.heappop(self._by_time)
            self._forget(key)
            self.floor_us = max(self.floor_us, ts_us + 1)
        while self._by_time and self._by_time[0][0] < self.floor_us:  # others of the forgotten timestamp
            self._forget(heapq.heappop(self._by_time)[1])

    def _forget(self, key: int) -> None:
        if self._ids[key] == 1:
            del self._ids[key]
        else:
            self._ids[key] -= 1
