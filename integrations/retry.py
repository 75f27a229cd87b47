"""When a failed delivery is tried again: exponential backoff with full jitter, capped.

Full jitter (a delay drawn uniformly below an exponentially growing ceiling) spreads the
retries of many events that failed together (a receiver's outage) instead of sending them back
in one burst when it returns. The first retry comes within `first` seconds, so a receiver's
blip costs seconds, not minutes; no retry is scheduled past the row's give-up time, and a row
whose last try was at that time is failed. A receiver that says when to come back (an HTTP
`Retry-After`, RFC 9110 section 10.2.3: a 429 of a rate limit, a 503 of a maintenance) is not
tried sooner than that. Pure: the random source and the clock are injected (tests seed them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from random import Random

#: beyond this the ceiling is the cap anyway; keeps 2**n a small number
_MAX_DOUBLINGS = 40
#: the longest Retry-After read, in seconds (a year): longer is past any `retry_for` anyway
MAX_ASKED_WAIT = 365 * 86400.0


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
    attempts: int,
    last_at: float,
    give_up_at: float,
    rng: Random,
    backoff: Backoff = DEFAULT,
    *,
    asked_wait: float | None = None,
) -> float | None:
    """When to try again after the `attempts`-th failure at `last_at`; None: give up (failed).

    `asked_wait`: the seconds the receiver asked for (its Retry-After). The retry comes that
    long after, plus the backoff's jittered delay: every event a receiver refused with one
    date would otherwise come back at that same second, and be refused together again. A wait
    that ends past `give_up_at` gives up now: the last try would come while the receiver still
    refuses. Otherwise a retry that would fall after `give_up_at` happens at `give_up_at`, the
    last one."""
    if last_at >= give_up_at:
        return None
    wait = backoff.delay(attempts, rng)
    if asked_wait is not None:
        if last_at + asked_wait > give_up_at:
            return None
        wait += asked_wait
    return min(last_at + wait, give_up_at)


def asked_wait(header: str | None, now: float) -> float | None:
    """The seconds from `now` a `Retry-After` header asks for, or None when it is absent or
    unreadable (then the backoff alone decides, as if it were not there).

    Either form of RFC 9110: delay-seconds ("120") or an HTTP-date, read against `now` (a date
    already past asks for no wait), in any of its three formats (asctime's names no zone: all
    are GMT). At most MAX_ASKED_WAIT: a wait of 10**400 s is a wait past any give-up time."""
    if header is None:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_ASKED_WAIT)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = when.timestamp() - now
    return min(max(0.0, wait), MAX_ASKED_WAIT) if math.isfinite(wait) else None
