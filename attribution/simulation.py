"""The accuracy simulator (issue 13): how many calls a pool of N numbers credits rightly.

A seeded model of a site's traffic drives the real core with simulated time: `LeasePolicy`
(a lease is held until the freeze time after the last activity; a ping extends it),
`NumberPool` with the project's allocator or a naive one, `SessionRule` for returning visitors
and `holder_at` for each call. No I/O and no wall clock: the same seed gives the same figures.

The model (`Model`; the figures are assumptions, not measurements: the replay of a site's own
leases, attribution/pool_replay.py, is what sizes a real pool):
- arrivals: `visits_per_day` page loads that may start a visit; first visits are spread over
  the hours of each day by `HOURLY` (quiet nights, busy afternoons, as a typical business
  site's analytics show), uniformly within the hour;
- a visit: a third bounce (one page, gone within 15 s); the rest stay a lognormal time (median
  2.5 min, so the mean visit is about 3 min, the usual analytics figure), at most 3 hours;
  while on the site the widget pings every 15-60 s;
- returning visitors: `return_share` of visitors come back once; a quarter of them within 30
  minutes (the session rule continues their visit), the rest a lognormal time later (median a
  day), in a new visit;
- callers: `call_share` of visitors call, after their last visit; a tenth while still on the
  site, most (75 % of the rest) within minutes of leaving (exponential, mean 2 min), a fifth of
  the rest some minutes later (lognormal, median 8 min) and a long tail (5 %: lognormal, median
  90 min, up to a day). They dial the number their visit showed last: a visitor shown no number
  (the pool was exhausted) dials the fallback, a call credited to nobody.

A call is *right* when the number's holder at the call instant is the caller's visit, *wrong*
when it is another visit, *none* when nobody held it or the caller dialled the fallback. A call
placed later than the freeze time after the caller's last activity can never be right: its
lease ran out, whatever the pool size; `Simulation.in_freeze` counts the calls that can.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from attribution.allocation import ALLOCATORS, NumberPool
from attribution.leasing import LeasePolicy, holder_at
from attribution.sessions import SessionRule
from attribution.traffic import DIRECT, NONE, TrafficSource

HOUR = 3600.0
DAY = 24 * HOUR
#: the share of a day's first visits in each hour (0-23); the weights are relative
HOURLY = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 9, 10, 11, 11, 10, 9, 8, 7, 6, 4, 3, 2)
#: pool sizes relative to the theoretical minimum that a run reports by default
RELATIVE_SIZES = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
_RETURN_ARRIVAL = TrafficSource(DIRECT, NONE)  # a returning visitor typing the address


@dataclass(frozen=True)
class Model:
    seed: int = 1
    days: int = 7
    visits_per_day: int = 2000
    call_share: float = 0.05
    return_share: float = 0.2
    bounce_share: float = 1 / 3
    visit_median: float = 150.0
    visit_sigma: float = 1.0
    longest_visit: float = 3 * HOUR
    ping_every: tuple[float, float] = (15.0, 60.0)
    return_soon_share: float = 0.25
    return_median: float = DAY
    call_on_site_share: float = 0.1
    call_soon_share: float = 0.75
    call_soon_mean: float = 120.0
    call_later_share: float = 0.2
    call_later_median: float = 480.0
    call_tail_median: float = 90 * 60.0
    longest_call_delay: float = DAY


@dataclass(frozen=True)
class Call:
    at: float
    session: int  # the caller's visit: the one whose number they dial


@dataclass(frozen=True)
class Traffic:
    """What the model made: each visit's activity instants (its first is its page load) and
    the calls, all in time order as the pool sees them."""

    activity: Sequence[Sequence[float]]
    calls: Sequence[Call]
    #: (instant, visit, first activity of the visit): the order the pool is driven in
    events: Sequence[tuple[float, int, bool]]

    @property
    def visits(self) -> int:
        return len(self.activity)

    @property
    def mean_visit(self) -> float:
        """The average time from a visit's first to its last activity, seconds."""
        return sum(a[-1] - a[0] for a in self.activity) / max(1, self.visits)

    @property
    def peak_hour_visits(self) -> int:
        """The most visits started within one clock hour."""
        counts: dict[int, int] = {}
        for acts in self.activity:
            hour = int(acts[0] // HOUR)
            counts[hour] = counts.get(hour, 0) + 1
        return max(counts.values(), default=0)


def make_traffic(model: Model) -> Traffic:
    """The model's visits and calls, from `random.Random(model.seed)` only."""
    rng = random.Random(model.seed)
    rule = SessionRule()
    activity: list[list[float]] = []
    calls: list[Call] = []
    first_per_day = round(model.visits_per_day / (1 + model.return_share))
    hours = range(24)
    for day in range(model.days):
        starts = sorted(
            day * DAY + hour * HOUR + rng.random() * HOUR
            for hour in rng.choices(hours, weights=HOURLY, k=first_per_day)
        )
        for start in starts:
            visit = _visit(rng, model, start)
            activity.append(visit)
            last = len(activity) - 1
            if rng.random() < model.return_share:
                back = visit[-1] + _return_delay(rng, model)
                again = _visit(rng, model, back)
                if rule.continues(visit[-1], back, b"", _RETURN_ARRIVAL):
                    visit.extend(again)
                else:
                    activity.append(again)
                    last = len(activity) - 1
            if rng.random() < model.call_share:
                calls.append(Call(_call_time(rng, model, activity[last]), last))
    events = sorted(
        (at, index, i == 0) for index, acts in enumerate(activity) for i, at in enumerate(acts)
    )
    calls.sort(key=lambda c: (c.at, c.session))
    return Traffic(activity, calls, events)


def _visit(rng: random.Random, model: Model, start: float) -> list[float]:
    """The activity instants of one visit: its page load, then a ping every 15-60 s."""
    if rng.random() < model.bounce_share:
        length = rng.random() * 15.0
    else:
        length = min(
            model.longest_visit, rng.lognormvariate(math.log(model.visit_median), model.visit_sigma)
        )
    instants = [start]
    low, high = model.ping_every
    at = start + rng.uniform(low, high)
    while at <= start + length:
        instants.append(at)
        at += rng.uniform(low, high)
    return instants


def _return_delay(rng: random.Random, model: Model) -> float:
    if rng.random() < model.return_soon_share:
        return rng.uniform(60.0, SessionRule().idle_timeout)
    return rng.lognormvariate(math.log(model.return_median), 1.0)


def _call_time(rng: random.Random, model: Model, visit: Sequence[float]) -> float:
    if rng.random() < model.call_on_site_share:
        return rng.uniform(visit[0], visit[-1])
    draw = rng.random()
    if draw < model.call_soon_share:
        delay = rng.expovariate(1 / model.call_soon_mean)
    elif draw < model.call_soon_share + model.call_later_share:
        delay = rng.lognormvariate(math.log(model.call_later_median), 0.8)
    else:
        delay = rng.lognormvariate(math.log(model.call_tail_median), 1.0)
    return visit[-1] + min(delay, model.longest_call_delay)


@dataclass(frozen=True)
class Outcome:
    """One pool size under one allocator."""

    allocator: str
    size: int
    visits: int
    not_tracked: int  # visits that never held a number: the fallback
    calls: int
    right: int
    wrong: int
    none: int
    #: wrong credits of calls placed within the freeze time after the caller's last activity:
    #: the lease rule (a held number is never handed to another session) makes it 0 at every
    #: pool size, exhausted or not; counted to check that the allocator keeps the rule
    wrong_in_freeze: int
    peak_held: int


class Simulation:
    """A model's traffic, and its theoretical minimum pool: the most visits holding a number
    at once when the pool never runs out (`Outcome.peak_held` of an unlimited run)."""

    def __init__(self, model: Model, policy: LeasePolicy) -> None:
        self.model = model
        self.policy = policy
        self.traffic = make_traffic(model)
        self.unlimited = self.run(self.traffic.visits, "longest_free")
        self.minimum = self.unlimited.peak_held

    @property
    def in_freeze(self) -> int:
        """Calls placed while the caller's number was still held, the most any pool can credit
        rightly (the unlimited pool's right calls)."""
        return self.unlimited.right

    def size(self, relative: float) -> int:
        """The pool size `relative` times the minimum, rounded up."""
        return math.ceil(relative * self.minimum - 1e-9)

    def run(self, size: int, allocator: str) -> Outcome:
        """Drive a pool of `size` numbers with the traffic and credit every call."""
        traffic = self.traffic
        pool = NumberPool(
            (f"n{i:06d}" for i in range(size)),
            self.policy,
            ALLOCATORS[allocator](self.model.seed),
        )
        held: list[str | None] = [None] * traffic.visits
        #: per visit, the instants its shown number changed, and what it became
        changed: list[list[float]] = [[] for _ in range(traffic.visits)]
        shown: list[list[str | None]] = [[] for _ in range(traffic.visits)]
        ever: list[bool] = [False] * traffic.visits
        for at, index, first in traffic.events:
            number = held[index]
            sid = str(index)
            if number is not None and pool.extend(number, sid, at):
                continue
            taken = pool.take(sid, at, preferred=number)
            if first or taken != number:
                changed[index].append(at)
                shown[index].append(taken)
            held[index] = taken
            ever[index] = ever[index] or taken is not None
        right = wrong = none = wrong_in_freeze = 0
        for call in traffic.calls:
            last = bisect.bisect_right(changed[call.session], call.at) - 1
            dialled = shown[call.session][last]
            holder = None if dialled is None else holder_at(pool.spans_of(dialled), call.at)
            if holder is None:
                none += 1
            elif holder.session_id == str(call.session):
                right += 1
            else:
                wrong += 1
                acts = traffic.activity[call.session]
                last_activity = acts[max(bisect.bisect_right(acts, call.at) - 1, 0)]
                wrong_in_freeze += call.at <= self.policy.held_until(last_activity)
        return Outcome(
            allocator,
            size,
            traffic.visits,
            ever.count(False),
            len(traffic.calls),
            right,
            wrong,
            none,
            wrong_in_freeze,
            pool.peak_held,
        )


def rules_of_thumb(traffic: Traffic, days: int, freeze_time: float) -> dict[str, int]:
    """What the trackers' rules of thumb would buy for this traffic (field notes):
    one number per 20 daily visitors, and the peak hour's visits times the time each holds a
    number (the average visit plus the freeze time)."""
    per_day = traffic.visits / max(1, days)
    return {
        "per_20_daily_visitors": math.ceil(per_day / 20),
        "peak_hour_x_hold_time": math.ceil(
            traffic.peak_hour_visits * (traffic.mean_visit + freeze_time) / HOUR
        ),
    }
