"""The pool advice over a range of local days, for `calltrack pools --recommend` and
/admin/pools: one reading of their options, one way to compute it.

The replay is CPU work (a few seconds for a month of a busy site), so it runs in a worker
thread: the daemon's event loop keeps answering visitors and Asterisk meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.pool_advice import DEFAULT_DAYS, DEFAULT_TARGET, PoolAdvice, advise
from attribution.reports import DayError, read_day, report_range
from pbx.settings import Settings
from pbx.storage.pool_usage import pool_records

#: what one request may make the server replay: a quarter of a year of visits
MAX_DAYS = 92
#: how the advice's weekdays (0 = Monday) are written
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class SizingError(ValueError):
    """An option the advice cannot take; the text names it and says what was expected."""


def read_target(text: str | None) -> float:
    """`--target`: a share of visits as a percentage ("99", "99.5%") or a fraction ("0.99")."""
    if text is None or text.strip() == "":
        return DEFAULT_TARGET
    value = text.strip().removesuffix("%")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not 0 < number <= 100:
        raise SizingError("target: expected a share of visits such as 99, 99.5% or 0.99")
    return number / 100 if number > 1 or text.strip().endswith("%") else number


def read_range(
    since: str | None, until: str | None, today: date, keep_days: int
) -> tuple[date, date]:
    """The local days the advice is based on, both included: by default the 28 days up to
    `until`, or to today, and none before the visits kept (`visits.keep_days`): retention
    keeps of those only the visits calls refer to, whose replay would size the pool too small."""
    kept_since = today - timedelta(days=keep_days - 1)
    try:
        last = read_day(until, "until", today)
        first = read_day(since, "since", max(report_range(last, DEFAULT_DAYS)[0], kept_since))
    except DayError as exc:
        raise SizingError(str(exc)) from None
    if first < kept_since:
        raise SizingError(
            f"since: visits are kept {keep_days} days (visits.keep_days): expected"
            f" {kept_since.isoformat()} or later"
        )
    if last < first:
        raise SizingError("until: expected a date on or after since")
    if (last - first).days + 1 > MAX_DAYS:
        raise SizingError(f"since..until: at most {MAX_DAYS} days")
    return first, last


def today(settings: Settings, now: float) -> date:
    return datetime.fromtimestamp(now, ZoneInfo(settings.ui.timezone)).date()


async def pool_advice(
    engine: AsyncEngine, settings: Settings, first: date, last: date, target: float
) -> list[PoolAdvice]:
    """The advice for every configured pool over the local days first..last."""
    zone = ZoneInfo(settings.ui.timezone)
    since = datetime.combine(first, time(), zone).timestamp()
    until = datetime.combine(last + timedelta(days=1), time(), zone).timestamp()
    policy = settings.lease_policy
    with _no_cycle_collection():
        records = await pool_records(engine, settings, since, until)
        return await asyncio.to_thread(
            lambda: [
                advise(record, policy, target, zone, settings.probable_window) for record in records
            ]
        )


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while a month of visits is read and replayed: the million
    tuples they make hold no cycles (they are freed by reference counting), but each burst of
    them set off a full collection of the whole heap, every one a pause of the event loop
    (11 of 0.1-0.5 s measured over 560,000 visits, 2 s in all)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
