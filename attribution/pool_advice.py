"""How many numbers a pool needs and what its freeze time buys, from its own recorded traffic.

Storage reads one pool's visits and calls over a range (`PoolRecord`); this module turns them
into the advice the admin reads on /admin/pools and in `calltrack pools --recommend`: what was
lost, the peak, the replayed curve of pool size against tracked visits (`pool_replay`), and the
freeze-time table. No I/O: the time zone is passed in, the clock is the record's range.

Freeze time. A call is caught by a freeze time F when it started at most F after its session's
last activity. The delays are known for the calls attributed to a session, and for probable
matches (a pool number nobody held, `attribution/probable.py`) through their likeliest
candidate: the only calls that show what a longer freeze would have caught. A call made while
its session was active has delay 0: every freeze catches it. What the delays are measured from
(the last activity before the call, not after it) is pbx/storage/pool_usage.py's.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import NamedTuple, overload

from attribution.leasing import REFUSED, LeasePolicy, Tracking
from attribution.pool_replay import Arrivals, Replay, replay

#: the freeze times the table shows, in minutes
FREEZE_STEPS = (5, 10, 15, 20, 30, 45, 60)
DEFAULT_TARGET = 0.99
DEFAULT_DAYS = 28
#: fewer calls than this say too little to advise a freeze time
MIN_CALLS = 30
#: visits that would have had a number with a bigger pool; IP-capped ones were refused for
#: their client's numbers (a scraper's, mostly): the pool is not sized for them, and the replay
#: leaves them out (their share would grow with the pool, the scraper's with it)
REPLAYED = frozenset({Tracking.TRACKED, Tracking.EXHAUSTED})
#: every time zone's offset is a whole number of quarter hours: local time is read per quarter
_QUARTER = 900


class PoolVisit(NamedTuple):
    """A visit that asked the pool for a number: `tracking` is what it came to last (a visit
    refused at its first page may get a number at a later one), `refused` the first refusal."""

    started_at: float
    last_seen: float
    tracking: Tracking
    refused: Tracking | None = None

    @property
    def lost(self) -> Tracking | None:
        """Why the pool refused the visit a number, at its first page or a later one."""
        return self.refused or (self.tracking if self.tracking in REFUSED else None)

    @property
    def replayed(self) -> bool:
        """Whether the replay gives it a place: it held a pool number, or asked for one while
        the pool was exhausted (refused for its client's numbers alone: not, see REPLAYED)."""
        return self.tracking in REPLAYED or self.refused is Tracking.EXHAUSTED


#: a visit's outcome as one byte of PoolVisits (None: not refused)
_OUTCOMES: tuple[Tracking | None, ...] = (*Tracking, None)
_CODES = {tracking: code for code, tracking in enumerate(_OUTCOMES)}


class PoolVisits(Sequence[PoolVisit]):
    """A pool's recorded visits in four flat arrays, 18 bytes a visit. As a list of PoolVisit
    each took ~120 (the tuple, its two floats, the list's pointer): 92 days of a busy site are
    millions of visits, read into the daemon that serves /admin/pools."""

    def __init__(self, visits: Iterable[PoolVisit] = ()) -> None:
        self._started = array("d")
        self._last = array("d")
        self._outcomes = bytearray()
        self._refusals = bytearray()
        for visit in visits:
            self.append(*visit)

    def append(
        self,
        started_at: float,
        last_seen: float,
        tracking: Tracking,
        refused: Tracking | None = None,
    ) -> None:
        self._started.append(started_at)
        self._last.append(last_seen)
        self._outcomes.append(_CODES[tracking])
        self._refusals.append(_CODES[refused])

    def __len__(self) -> int:
        return len(self._outcomes)

    def __iter__(self) -> Iterator[PoolVisit]:
        outcome = _OUTCOMES.__getitem__
        columns = (self._started, self._last, map(outcome, self._outcomes))
        return map(PoolVisit._make, zip(*columns, map(outcome, self._refusals), strict=True))

    @overload
    def __getitem__(self, index: int) -> PoolVisit: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[PoolVisit]: ...
    def __getitem__(self, index: int | slice) -> PoolVisit | Sequence[PoolVisit]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        code = self._outcomes[index]  # IndexError as a list's
        tracking, refused = _OUTCOMES[code], _OUTCOMES[self._refusals[index]]
        assert tracking is not None  # appended as a Tracking
        return PoolVisit(self._started[index], self._last[index], tracking, refused)


class PoolCall(NamedTuple):
    call_id: int
    started_at: float


@dataclass(frozen=True)
class PoolRecord:
    """One pool's recorded traffic over [since, until), as storage read it."""

    site: str
    pool: str
    numbers: int
    since: float
    until: float
    visits: Sequence[PoolVisit]
    #: seconds from the session's last activity to the call (negative: while it was active)
    call_delays: Sequence[float]
    #: how many of `call_delays` are probable matches (the rest were attributed exactly)
    probable_calls: int
    fallback_calls: Sequence[PoolCall]
    unheld_calls: Sequence[PoolCall]
    #: the other pools of the site whose visitors see the same fallback number (its calls
    #: are the site's: they show under each of them)
    fallback_shared_with: tuple[str, ...] = ()


@dataclass(frozen=True)
class FreezeStep:
    minutes: float
    caught_share: float | None  # None: no calls to measure by
    size_needed: int


@dataclass(frozen=True)
class Lost:
    """Visits a pool gave no number: the pool was exhausted, or the client held too many."""

    exhausted: int = 0
    ip_cap: int = 0

    @property
    def total(self) -> int:
        return self.exhausted + self.ip_cap


@dataclass(frozen=True)
class PoolAdvice:
    """What the admin reads about one pool. It keeps counts, not the record's visits: a month
    of a busy site is a million of them, and the advice outlives the computation."""

    site: str
    pool: str
    numbers: int
    visits: int
    visits_not_tracked: int
    fallback_calls: Sequence[PoolCall]
    fallback_shared_with: tuple[str, ...]
    unheld_calls: Sequence[PoolCall]
    #: the calls the freeze table measures: attributed exactly, probable matches, and calls to
    #: pool numbers no visit could be matched to (counted as caught by no freeze)
    attributed_calls: int
    probable_calls: int
    unmatched_calls: int
    target: float
    freeze_minutes: float
    replay: Replay
    recommended: int
    freeze: Sequence[FreezeStep]
    #: minutes after a visit's last activity up to which a call is matched to it at all (the
    #: freeze time and the probable window): the caught shares of longer freezes are upper
    #: bounds, since calls later than this leave no trace of their visit
    calls_seen_within: float
    #: what the admin can act on, e.g. "freeze 15m caught 96% of calls; 25m would catch 99% …"
    freeze_advice: str
    lost_by_day: dict[int, Lost]  # local yyyymmdd
    lost_by_hour: Sequence[Lost]  # local hour of day 0..23
    #: exhausted visits per local weekday (0 = Monday) and hour: when the pool ran out
    ran_out: Sequence[Sequence[int]]

    def as_json(self) -> dict[str, object]:
        """The shape of `calltrack pools --recommend --json` (one entry of "pools")."""
        return {
            "site": self.site,
            "pool": self.pool,
            "numbers": self.numbers,
            "peak_held": self.replay.held_peak,
            "peak_at": self.replay.held_peak_at,
            "visits": self.visits,
            "visits_not_tracked": self.visits_not_tracked,
            "fallback_calls": len(self.fallback_calls),
            "unheld_calls": len(self.unheld_calls),
            "recommended": self.recommended,
            "target": self.target,
            "curve": [[size, round(share, 6)] for size, share in self.replay.curve()],
            "freeze": [
                [
                    step.minutes,
                    None if step.caught_share is None else round(step.caught_share, 6),
                    step.size_needed,
                ]
                for step in self.freeze
            ],
            # beside the fields: what an unlimited pool would have held at once
            "peak_demand": self.replay.peak,
            "peak_demand_at": self.replay.peak_at,
            "unmatched_calls": self.unmatched_calls,
        }


@dataclass(frozen=True)
class CallDelays:
    """The calls the freeze table measures: how long after their visit's last activity each
    came (sorted), and the calls to pool numbers no visit could be matched to (`unmatched`:
    later than any freeze the record can see, so never counted as caught)."""

    delays: Sequence[float]
    unmatched: int = 0

    @classmethod
    def of(cls, delays: Sequence[float], unmatched: int = 0) -> CallDelays:
        return cls(sorted(delays), unmatched)

    @property
    def total(self) -> int:
        return len(self.delays) + self.unmatched

    def caught(self, minutes: float) -> float | None:
        """The share of calls a freeze of `minutes` would have caught; None without calls."""
        if not self.total:
            return None
        return bisect.bisect_right(self.delays, minutes * 60) / self.total

    def freeze_for(self, target: float) -> float | None:
        """The shortest whole-minute freeze that catches `target` of the calls, at least the
        table's shortest; None when none can (too many calls matched no visit) or no calls."""
        needed = math.ceil(target * self.total * (1 - 1e-12))
        if not self.total or needed > len(self.delays):
            return None
        longest = max(self.delays[needed - 1], 0.0) if needed else 0.0
        return float(max(math.ceil(longest / 60), FREEZE_STEPS[0]))


def _minutes(value: float) -> str:
    return f"{value:g}m"


def _advice(calls: CallDelays, now: float, target: float, sizes: dict[float, int]) -> str:
    if calls.total < MIN_CALLS:
        return (
            f"Only {calls.total} call{'s' * (calls.total != 1)} to measure by in this period:"
            f" too few to advise a freeze time (at least {MIN_CALLS})."
        )
    head = f"freeze {_minutes(now)} caught {calls.caught(now) or 0:.0%} of calls"
    better = calls.freeze_for(target)
    if better is None:
        return (
            f"{head}; {calls.unmatched} of {calls.total} calls matched no visit, so no freeze"
            f" time catches {target:.0%} of them."
        )
    if better == now:
        return f"{head}; it is the shortest freeze that catches {target:.0%}."
    if better > now and (calls.caught(now) or 0) >= target:  # shorter than the table's first
        return f"{head}; it catches {target:.0%} already."
    more = sizes[better] - sizes[now]
    word = "more" if more > 0 else "fewer"
    change = f"{abs(more)} {word} number{'s' * (abs(more) != 1)}" if more else "no more numbers"
    pool = f"{sizes[better]} in all for {target:.0%} of visits"
    if better > now:
        return f"{head}; {_minutes(better)} would catch {target:.0%} and needs {change} ({pool})."
    return (
        f"{head}; {_minutes(better)} would still catch {target:.0%} and needs {change}"
        f" ({pool}; a shorter freeze also gives late callers' numbers to others sooner)."
    )


class _LocalTime:
    """Local (day, hour, weekday) of instants, read once per quarter hour."""

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._quarters: dict[int, tuple[int, int, int]] = {}

    def __call__(self, at: float) -> tuple[int, int, int]:
        quarter = int(at // _QUARTER)
        found = self._quarters.get(quarter)
        if found is None:
            local = datetime.fromtimestamp(quarter * _QUARTER, self._zone)
            day = local.year * 10000 + local.month * 100 + local.day
            found = self._quarters[quarter] = (day, local.hour, local.weekday())
        return found


def advise(
    record: PoolRecord,
    policy: LeasePolicy,
    target: float,
    zone: tzinfo,
    probable_window: float | None = None,
) -> PoolAdvice:
    """The advice for one pool: `policy` is the daemon's lease policy (its freeze time now),
    `probable_window` how long after a lease ended a call is still matched to it (default: the
    freeze time, as the config's `attribution.probable_window`)."""
    local = _LocalTime(zone)
    by_day: Counter[tuple[int, Tracking]] = Counter()
    by_hour: Counter[tuple[int, Tracking]] = Counter()
    ran_out = [[0] * 24 for _ in range(7)]

    def replayed() -> Iterator[tuple[float, float]]:
        """The visits the replay gives a place, counting the lost ones on the way: one pass
        over a month of visits, not two (Arrivals.of takes them all at once)."""
        for visit in record.visits:
            if why := visit.lost:
                day, hour, weekday = local(visit.started_at)
                by_day[day, why] += 1
                by_hour[hour, why] += 1
                if why is Tracking.EXHAUSTED:
                    ran_out[weekday][hour] += 1
            if visit.replayed:
                yield visit.started_at, visit.last_seen

    arrivals = Arrivals.of(replayed())
    calls = CallDelays.of(record.call_delays, len(record.unheld_calls) - record.probable_calls)
    freeze_now = policy.freeze_time / 60
    steps = sorted({*FREEZE_STEPS, freeze_now, calls.freeze_for(target) or freeze_now})
    replays = {
        m: replay(arrivals, replace(policy, freeze_time=m * 60), size=record.numbers) for m in steps
    }
    sizes = {m: result.smallest_for(target) for m, result in replays.items()}
    now = replays[freeze_now]

    days = sorted({day for day, _ in by_day})
    return PoolAdvice(
        site=record.site,
        pool=record.pool,
        numbers=record.numbers,
        visits=len(record.visits),
        visits_not_tracked=sum(by_day.values()),
        fallback_calls=record.fallback_calls,
        fallback_shared_with=record.fallback_shared_with,
        unheld_calls=record.unheld_calls,
        attributed_calls=len(calls.delays) - record.probable_calls,
        probable_calls=record.probable_calls,
        unmatched_calls=calls.unmatched,
        target=target,
        freeze_minutes=freeze_now,
        replay=now,
        recommended=sizes[freeze_now],
        freeze=[
            FreezeStep(minutes=m, caught_share=calls.caught(m), size_needed=sizes[m])
            for m in FREEZE_STEPS
        ],
        calls_seen_within=freeze_now + (probable_window or policy.freeze_time) / 60,
        freeze_advice=_advice(calls, freeze_now, target, sizes),
        lost_by_day={
            day: Lost(by_day[day, Tracking.EXHAUSTED], by_day[day, Tracking.IP_CAP]) for day in days
        },
        lost_by_hour=[
            Lost(by_hour[hour, Tracking.EXHAUSTED], by_hour[hour, Tracking.IP_CAP])
            for hour in range(24)
        ],
        ran_out=ran_out,
    )
