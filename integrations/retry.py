"""When a failed delivery is tried again: exponential backoff with full jitter, capped.

Full jitter (a delay drawn uniformly below an exponentially growing ceiling) spreads the
retries of many events that failed together (a receiver's outage) instead of sending them back
in one burst when it returns. The first retry comes within `first` seconds, so a receiver's
blip costs seconds, not minutes; no retry is scheduled past the row's give-up time, and a row
whose last try was at that time is failed. Pure: the random source is injected (tests seed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

#: beyond this the ceiling is the cap anyway; keeps 2**n a small number
_MAX_DOUBLINGS = 40


@dataclass(frozen=True)
class Backoff:
    first: float = 5.0  # the first retry's ceiling (the issue: within 10 s)
    cap: float = 3600.0  # no two attempts further apart than this
    floor: float = 1.0  # no retry sooner than this: a refusing receiver is not hammered

    def delay(self, attempts: int, rng: Random) -> float:
        """Seconds from the `attempts`-th failed attempt (1 = the first) to the next one."""
        doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
        ceiling = min(self.cap, self.first * 2.0**doublings)
        return max(self.floor, rng.uniform(0.0, ceiling))


DEFAULT = Backoff()


def next_try(
    attempts: int, last_at: float, give_up_at: float, rng: Random, backoff: Backoff = DEFAULT
) -> float | None:
    """When to try again after the `attempts`-th failure at `last_at`; None: give up (failed).

    A retry that would fall after `give_up_at` happens at `give_up_at`, the last one."""
    if last_at >= give_up_at:
        return None
    return min(last_at + backoff.delay(attempts, rng), give_up_at)
