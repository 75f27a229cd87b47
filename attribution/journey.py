"""A caller's journey up to a call: their visits and earlier calls, and what staff read off them.

"Came first from a billboard, returned twice from search, called 12 days after the first visit,
called again 3 days later": the gaps in days and the channels that brought the visitor back are
worked out here from rows storage read (pbx/storage/journey.py), without I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

DAY_SECONDS = 86400.0


def days_between(earlier: float, later: float) -> float:
    """Elapsed days (not calendar days: no time zone to disagree on), to a tenth."""
    return round((later - earlier) / DAY_SECONDS, 1)


@dataclass(frozen=True)
class PageView:
    at: float
    url: str


@dataclass(frozen=True)
class JourneyVisit:
    session_id: str
    started_at: float
    site: str
    source: str
    medium: str
    campaign: str | None
    term: str | None
    landing_url: str
    referrer: str | None
    pages: Sequence[PageView] = ()
    pages_truncated: bool = False


@dataclass(frozen=True)
class JourneyCall:
    id: int
    started_at: float
    caller: str
    status: str
    attribution: str
    source: str | None
    medium: str | None
    campaign: str | None
    tags: Sequence[str] = ()


@dataclass(frozen=True)
class ProbableVisit:
    """A session a call nobody's number held probably came from (attribution.probable)."""

    session_id: str
    released_at: float
    likelihood: float
    source: str
    medium: str
    campaign: str | None


@dataclass(frozen=True)
class Journey:
    call: JourneyCall
    visits: Sequence[JourneyVisit]  # oldest first
    earlier_calls: Sequence[JourneyCall]  # oldest first
    first_visit_at: float | None
    days_since_first_visit: float | None  # from the first visit to this call
    days_between_calls: Sequence[float]  # each call after the first, from the one before
    channels_back: Sequence[str]  # distinct sources of the visits after the first, in order
    visits_total: int  # visits before the call, also those not listed
    truncated: dict[str, bool] = field(default_factory=dict)
    probable: Sequence[ProbableVisit] = ()  # likeliest first, for a probable match


def channels_back(visits: Sequence[JourneyVisit], first_visit_at: float | None) -> list[str]:
    """The distinct sources of the visits after the first one, in the order they first came."""
    seen: list[str] = []
    for visit in visits:
        if first_visit_at is not None and visit.started_at <= first_visit_at:
            continue  # the first visit brought them; it did not bring them back
        if visit.source not in seen:
            seen.append(visit.source)
    return seen


def assemble(
    call: JourneyCall,
    visits: Sequence[JourneyVisit],
    earlier_calls: Sequence[JourneyCall],
    *,
    first_visit_at: float | None = None,
    visits_total: int | None = None,
    truncated: dict[str, bool] | None = None,
    probable: Sequence[ProbableVisit] = (),
) -> Journey:
    """The journey from its rows. `first_visit_at` is the visitor's first visit when the listed
    visits are only the latest ones (a capped read); otherwise the first listed visit is it."""
    visits = sorted(visits, key=lambda v: v.started_at)
    earlier_calls = sorted(earlier_calls, key=lambda c: (c.started_at, c.id))
    starts = [v.started_at for v in visits]
    if first_visit_at is not None:
        starts.append(first_visit_at)
    first = min(starts, default=None)
    times = [c.started_at for c in earlier_calls] + [call.started_at]
    return Journey(
        call=call,
        visits=visits,
        earlier_calls=earlier_calls,
        first_visit_at=first,
        days_since_first_visit=days_between(first, call.started_at) if first is not None else None,
        days_between_calls=[days_between(a, b) for a, b in pairwise(times)],
        channels_back=channels_back(visits, first),
        visits_total=len(visits) if visits_total is None else visits_total,
        truncated=dict(truncated or {}),
        probable=sorted(probable, key=lambda p: (-p.likelihood, -p.released_at)),
    )
