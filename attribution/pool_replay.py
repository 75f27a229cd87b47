"""Pool-size replay: how recorded visits would have fared with other pool sizes (issue 13).

Each recorded session needed a number from its arrival until the lease policy let it go (its
last activity plus the freeze time, `LeasePolicy.held_until`). Replayed through a pool of N
numbers in arrival order, a session that arrives while all N are held gets none (the fallback),
as the daemon does. Which number a session gets does not change who gets one, so a pass only
counts held numbers. Exact for the recorded traffic; not a forecast.

What the replay cannot know: a session refused at its start may get a number at a later ping in
the daemon; the recorded sessions keep only their first and last activity, so the replay counts
such a session as not tracked (the share is a lower bound, by at most those late takers).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from attribution.leasing import LeasePolicy


@dataclass(frozen=True)
class RecordedVisit:
    arrival: float
    last_activity: float


@dataclass(frozen=True)
class Spans:
    """The visits as (arrival, release) pairs in arrival order: made once, replayed per size."""

    spans: Sequence[tuple[float, float]]

    @classmethod
    def of(cls, visits: Iterable[RecordedVisit], policy: LeasePolicy) -> Spans:
        return cls(
            sorted((v.arrival, max(v.arrival, policy.held_until(v.last_activity))) for v in visits)
        )


def tracked(spans: Spans, size: int) -> int:
    """How many of the visits a pool of `size` numbers would have given a number."""
    if size <= 0:
        return 0
    releases: list[float] = []  # release times of the numbers held now
    count = 0
    for arrival, release in spans.spans:
        while releases and releases[0] < arrival:  # held until then: free from just after
            heapq.heappop(releases)
        if len(releases) < size:
            heapq.heappush(releases, release)
            count += 1
    return count


def peak_held(spans: Spans) -> tuple[int, float | None]:
    """The most numbers held at once with an unlimited pool, and when: the size that tracks
    every recorded visit."""
    releases: list[float] = []
    peak, at = 0, None
    for arrival, release in spans.spans:
        while releases and releases[0] < arrival:
            heapq.heappop(releases)
        heapq.heappush(releases, release)
        if len(releases) > peak:
            peak, at = len(releases), arrival
    return peak, at


def curve(spans: Spans, sizes: Iterable[int]) -> list[tuple[int, float]]:
    """(size, tracked share) for each size; an empty history is fully tracked."""
    total = len(spans.spans)
    return [(n, tracked(spans, n) / total if total else 1.0) for n in sizes]


def recommend(spans: Spans, target: float) -> int:
    """The smallest pool that tracks at least `target` (0..1) of the visits. The tracked count
    never falls as the pool grows (property-tested in tests/unit/test_pool_replay.py), so a
    binary search between 0 and the peak finds it in log(peak) passes."""
    total = len(spans.spans)
    low, high = 0, peak_held(spans)[0]
    while low < high:
        middle = (low + high) // 2
        if total and tracked(spans, middle) / total >= target:
            high = middle
        else:
            low = middle + 1
    return low
