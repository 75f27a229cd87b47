"""Pool-size replay: how recorded visits would have fared with other pool sizes (issue 13).

Each recorded session needed a number from its arrival until the lease policy let it go (its
last activity plus the freeze time, `LeasePolicy.held_until`). With a pool of N numbers, a
session that arrives while all N are held gets none (the fallback), as the daemon does. Which
number a session gets does not change who gets one, so the replay only counts held numbers.

One pass answers every pool size at once. Number the pool's places 1, 2, 3, … and give each
arriving session the lowest place free at that instant (an "ordered hunt"): a session that
gets place k found places 1…k-1 held, so a pool of N numbers tracks exactly the sessions that
got a place ≤ N. (Induction over arrivals: the sessions a pool of N holds at any instant are
those on places 1…N, so a pool of N refuses exactly the sessions that found them all held.)
The count per place is the whole curve, from one sort and one sweep, whatever the pool sizes.

Exact for the recorded traffic; not a forecast. What the replay cannot know: a session refused
at its start may get a number at a later ping in the daemon; the recorded sessions keep only
their first and last activity, so the replay counts such a session as not tracked (the share is
a lower bound, by at most those late takers).
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from attribution.leasing import LeasePolicy


class RecordedVisit(NamedTuple):
    arrival: float
    last_activity: float


@dataclass(frozen=True)
class Replay:
    """Recorded visits replayed through the lease policy: per pool size, the visits tracked."""

    visits: int
    #: places[k - 1]: the visits whose lowest free place was k
    places: tuple[int, ...]
    #: the first instant the most numbers were held with an unlimited pool (None: no visits)
    peak_at: float | None
    #: with a pool of the size asked (`replay(..., size=)`): the most numbers it held at once,
    #: and the first instant it did: never more than that size
    held_peak: int = 0
    held_peak_at: float | None = None

    @property
    def peak(self) -> int:
        """The most numbers held at once with an unlimited pool: the size tracking every visit."""
        return len(self.places)

    def tracked(self, size: int) -> int:
        return sum(self.places[: max(size, 0)])

    def share(self, size: int) -> float:
        """The share of visits a pool of `size` would have tracked; no visits is all tracked."""
        return self.tracked(size) / self.visits if self.visits else 1.0

    def curve(self) -> list[tuple[int, float]]:
        """(size, tracked share) for every size from 1 to the peak."""
        shares = itertools.accumulate(self.places)
        return [(size, count / self.visits) for size, count in enumerate(shares, start=1)]

    def smallest_for(self, target: float) -> int:
        """The smallest pool that tracks at least `target` (0..1) of the visits."""
        need = target * self.visits * (1 - 1e-12)  # 0.07 * 100 is 7.000000000000001
        if need <= 0:
            return 0
        for size, count in enumerate(itertools.accumulate(self.places), start=1):
            if count >= need:
                return size
        return self.peak


@dataclass(frozen=True)
class Arrivals:
    """Recorded visits as (arrival, last activity) in arrival order: sorted once, replayed
    through as many policies (freeze times) as asked. Two flat arrays, 16 bytes a visit (a
    list of tuples took ~90): months of a busy site are millions of visits."""

    arrivals: array[float]
    last_activities: array[float]

    @classmethod
    def of(cls, visits: Iterable[tuple[float, float]]) -> Arrivals:
        """From (arrival, last activity) pairs (RecordedVisit), in any order."""
        arrivals, lasts = array("d"), array("d")
        add_arrival, add_last = arrivals.append, lasts.append
        in_order = True
        previous_arrival = previous_last = -math.inf
        for arrival, last in visits:
            last = max(last, arrival)
            if arrival < previous_arrival or (arrival == previous_arrival and last < previous_last):
                in_order = False
            previous_arrival, previous_last = arrival, last
            add_arrival(arrival)
            add_last(last)
        if not in_order:  # storage reads them in arrival order: seldom
            order = sorted(range(len(arrivals)), key=lambda i: (arrivals[i], lasts[i]))
            arrivals = array("d", (arrivals[i] for i in order))
            lasts = array("d", (lasts[i] for i in order))
        return cls(arrivals, lasts)

    def __len__(self) -> int:
        return len(self.arrivals)

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(self.arrivals, self.last_activities, strict=True)


def replay(arrivals: Arrivals, policy: LeasePolicy, size: int = 0) -> Replay:
    """Replay the arrivals through `policy` for every pool size at once (see the module doc);
    with `size`, also the most numbers a pool of that size held at once (places 0..size-1)."""
    held: list[tuple[float, int]] = []  # (held until, place)
    free: list[int] = []  # places let go, lowest first
    places: list[int] = []
    peak_at = None
    in_pool = held_peak = 0  # places below `size` held now, and the most at once
    held_peak_at = None
    push, pop, held_until = heapq.heappush, heapq.heappop, policy.held_until
    for arrival, last_activity in arrivals:
        while held and held[0][0] < arrival:  # held until then: free from just after
            let_go = pop(held)[1]
            push(free, let_go)
            in_pool -= let_go < size
        if free:
            place = pop(free)
        else:  # every place so far is held: a new peak
            place = len(places)
            places.append(0)
            peak_at = arrival
        places[place] += 1
        push(held, (held_until(last_activity), place))
        if place < size:
            in_pool += 1
            if in_pool > held_peak:
                held_peak, held_peak_at = in_pool, arrival
    return Replay(len(arrivals), tuple(places), peak_at, held_peak, held_peak_at)
