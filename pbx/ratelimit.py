"""A sliding-window counter of failures, for the login form (kept in memory, per daemon)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

MAX_KEYS = 100_000  # a flood of distinct keys cannot grow memory without bound


class FailureLimit:
    """At most `limit` failures per key within `window` seconds; then callers must wait."""

    def __init__(self, clock: Callable[[], float], limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again; 0 when none is over the limit."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self._limit:
                wait = max(wait, times[0] + self._window - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        if len(self._failures) >= MAX_KEYS:
            self._failures.clear()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times
