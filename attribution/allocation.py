"""Which free number a session gets: the allocation rule as an in-memory pool (issue 13).

The daemon's rule is "free the longest": a number never leased first, then the one whose lease
ran out earliest, then by number. pbx/storage/number_claims.py implements it in SQL
(`_LONGEST_FREE`, and `_unused` for SQLite); this module is its definition, so the simulator
(attribution/simulation.py) drives the same rule the daemon runs. A late caller dials the number
they saw after its lease ran out: the longer a freed number rests before it is handed out again,
the more such calls find the number unheld (no credit) rather than held by a stranger (a wrong
credit). `random_free`, a naive tracker's choice, is kept to measure what the rule is worth.

`NumberPool` never hands a held number (`LeasePolicy.is_held`) to another session, and records
every lease as a `LeaseSpan`, so `holder_at` answers who held a number at a call's instant.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from attribution.leasing import LeasePolicy, LeaseSpan


class FreeNumbers(Protocol):
    """The free numbers of a pool, and which of them the next session gets."""

    def add(self, number: str, freed_at: float | None) -> None:
        """`number` is free since `freed_at` (None: never leased)."""

    def discard(self, number: str) -> None:
        """`number` is no longer free (it was handed out by name)."""

    def pop(self) -> str | None:
        """The number to hand out next, removed from the free ones; None when none is free."""


class LongestFree:
    """The project's rule: never leased first, then the earliest freed, then by number."""

    def __init__(self) -> None:
        self._heap: list[tuple[bool, float, str]] = []
        self._free: set[str] = set()

    def add(self, number: str, freed_at: float | None) -> None:
        self._free.add(number)
        heapq.heappush(self._heap, (freed_at is not None, freed_at or 0.0, number))

    def discard(self, number: str) -> None:
        self._free.discard(number)  # its heap entry is skipped when it comes up

    def pop(self) -> str | None:
        while self._heap:
            number = heapq.heappop(self._heap)[2]
            if number in self._free:
                self._free.remove(number)
                return number
        return None


class RandomFree:
    """The naive rule: any free number, drawn from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._numbers: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, number: str, freed_at: float | None) -> None:
        self._index[number] = len(self._numbers)
        self._numbers.append(number)

    def discard(self, number: str) -> None:
        index = self._index.pop(number, None)
        if index is None:
            return
        last = self._numbers.pop()
        if last != number:
            self._numbers[index] = last
            self._index[last] = index

    def pop(self) -> str | None:
        if not self._numbers:
            return None
        number = self._numbers[self._rng.randrange(len(self._numbers))]
        self.discard(number)
        return number


#: the allocators by name: a seed makes `random_free` repeatable
ALLOCATORS: dict[str, Callable[[int], FreeNumbers]] = {
    "longest_free": lambda seed: LongestFree(),
    "random_free": lambda seed: RandomFree(random.Random(seed)),
}


@dataclass
class _Lease:
    lease_id: str
    session_id: str
    started_at: float
    held_until: float


class NumberPool:
    """A pool of numbers leased to sessions under `policy`, with every lease kept as a span.

    Time only moves forward: `take` and `extend` must be called in time order.
    """

    def __init__(self, numbers: Iterable[str], policy: LeasePolicy, free: FreeNumbers) -> None:
        self._policy = policy
        self._free = free
        self._leases: dict[str, _Lease] = {}  # the numbers leased and not yet seen to run out
        #: (held_until when pushed, number): a lower bound of the lease's end, as a ping only
        #: moves it later; an entry is checked against the lease when it comes up
        self._ends: list[tuple[float, str]] = []
        self._spans: dict[str, list[LeaseSpan]] = {}
        self._free_now: set[str] = set()
        for number in sorted(numbers):
            self._spans[number] = []
            self._free_now.add(number)
            free.add(number, None)
        self.peak_held = 0  # the most numbers held at once so far

    def take(self, session_id: str, now: float, preferred: str | None = None) -> str | None:
        """Lease a free number to the session (`preferred` first when free); None: exhausted."""
        self._release(now)
        if preferred is not None and preferred in self._free_now:
            self._free.discard(preferred)
            number: str | None = preferred
        else:
            number = self._free.pop()
        if number is None:
            return None
        self._free_now.discard(number)
        held_until = self._policy.held_until(now)
        lease_id = f"{number}#{len(self._spans[number])}"
        self._leases[number] = _Lease(lease_id, session_id, now, held_until)
        heapq.heappush(self._ends, (held_until, number))
        self.peak_held = max(self.peak_held, len(self._leases))
        return number

    def extend(self, number: str, session_id: str, now: float) -> bool:
        """Activity of the session: keep its number held; False when its lease ran out."""
        lease = self._leases.get(number)
        if lease is None or lease.session_id != session_id:
            return False
        if not LeasePolicy.is_held(lease.held_until, now):
            return False
        lease.held_until = self._policy.held_until(now)
        return True

    def spans_of(self, number: str) -> list[LeaseSpan]:
        """Every lease of `number` so far, the current one with its end as it stands."""
        spans = list(self._spans[number])
        lease = self._leases.get(number)
        if lease is not None:
            spans.append(_span(number, lease))
        return spans

    def _release(self, now: float) -> None:
        """Free the numbers whose leases ran out before `now`, in the order they ran out."""
        ends = self._ends
        while ends and not LeasePolicy.is_held(ends[0][0], now):
            _, number = heapq.heappop(ends)
            lease = self._leases[number]
            if LeasePolicy.is_held(lease.held_until, now):  # extended since: look again later
                heapq.heappush(ends, (lease.held_until, number))
                continue
            del self._leases[number]
            self._spans[number].append(_span(number, lease))
            self._free_now.add(number)
            self._free.add(number, lease.held_until)


def _span(number: str, lease: _Lease) -> LeaseSpan:
    return LeaseSpan(lease.lease_id, number, lease.session_id, lease.started_at, lease.held_until)
