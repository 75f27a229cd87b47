"""The admins' pool sizing page (/admin/pools, issue 13): per pool, what was lost, the peak, the
replayed curve of pool size against tracked visits and the freeze-time table, with charts.

The options are read and the advice computed by pbx.pool_sizing, as `calltrack pools
--recommend` does, so the page and the command say the same; this module lays them out. One
computation runs at a time (it is a second or two of CPU for a busy month): an admin reloading
the page waits for the one before instead of stacking replays on the daemon.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta

from aiohttp import web

from attribution.pool_advice import PoolAdvice, PoolCall
from attribution.reports import local_day
from pbx.auth import require_user
from pbx.keys import CLOCK, READER, SETTINGS
from pbx.pool_sizing import WEEKDAYS, SizingError, pool_advice, read_range, read_target, today
from pbx.staff_ui import charts
from pbx.staff_ui.views import render

POOL_ADVICE_LOCK = web.AppKey("pool_advice_lock", asyncio.Lock)
CALLS_LISTED = 50  # of each kind per pool; the counts stay exact
#: exhausted visits in an hour of the week, from which a cell is drawn darker (ui.css heat-N)
HEAT = (1, 3, 10, 30)


@dataclass(frozen=True)
class PoolView:
    """One pool's section of the page: the advice and the charts drawn from it."""

    advice: PoolAdvice
    curve: charts.Chart
    lost_by_day: charts.Chart
    lost_by_hour: charts.Chart
    freeze: charts.Chart
    ran_out: list[list[tuple[int, int]]]  # per weekday, per hour: (count, heat level)
    fallback_calls: list[PoolCall]
    unheld_calls: list[PoolCall]

    @property
    def share_now(self) -> float:
        return self.advice.replay.share(self.advice.numbers)


def _heat(count: int) -> int:
    return sum(count >= step for step in HEAT)


def _curve(advice: PoolAdvice) -> charts.Chart:
    numbers, recommended = advice.numbers, advice.recommended
    bands = [charts.Band(numbers, charts.PALETTE[0], f"up to your {numbers} numbers")]
    if recommended > numbers:
        bands.append(
            charts.Band(
                recommended, charts.PALETTE[1], f"up to the {recommended} that track the target"
            )
        )
    bands.append(charts.Band(advice.replay.peak, charts.OTHER_COLOUR, "larger"))
    return charts.share_columns(
        "Visits tracked, by pool size (replayed)", advice.replay.curve(), bands
    )


def _lost_by_day(advice: PoolAdvice, first: date, last: date) -> charts.Chart:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    counts = []
    for day in days:
        lost = advice.lost_by_day.get(local_day(day))
        counts.append([lost.exhausted, lost.ip_cap] if lost else [0, 0])
    return charts.stacked_columns(
        "Visits without a number, per day",
        [day.strftime("%m-%d") for day in days],
        ["pool exhausted", "per-client cap"],
        counts,
        unit="visits",
    )


def _lost_by_hour(advice: PoolAdvice) -> charts.Chart:
    return charts.stacked_columns(
        "Visits without a number, by hour of day",
        [f"{hour:02d}" for hour in range(24)],
        ["pool exhausted", "per-client cap"],
        [[lost.exhausted, lost.ip_cap] for lost in advice.lost_by_hour],
        unit="visits",
    )


def _freeze(advice: PoolAdvice) -> charts.Chart:
    steps = [s for s in advice.freeze if s.caught_share is not None]
    return charts.grouped_bars(
        "What each freeze time catches, and the pool it needs",
        [f"freeze {s.minutes:g} min" for s in steps],
        [
            charts.Measure(
                "calls caught",
                [s.caught_share or 0.0 for s in steps],
                [f"{s.caught_share or 0:.0%}" for s in steps],
            ),
            charts.Measure(
                f"numbers for {advice.target:.0%}",
                [float(s.size_needed) for s in steps],
                [str(s.size_needed) for s in steps],
            ),
        ],
    )


def pool_view(advice: PoolAdvice, first: date, last: date) -> PoolView:
    return PoolView(
        advice=advice,
        curve=_curve(advice),
        lost_by_day=_lost_by_day(advice, first, last),
        lost_by_hour=_lost_by_hour(advice),
        freeze=_freeze(advice),
        ran_out=[[(n, _heat(n)) for n in hours] for hours in advice.ran_out],
        fallback_calls=list(advice.fallback_calls[-CALLS_LISTED:])[::-1],
        unheld_calls=list(advice.unheld_calls[-CALLS_LISTED:])[::-1],
    )


def _percent(text: str | None) -> str | None:
    """The form asks for a percentage: "1" is 1 %, not the fraction 1 the command reads."""
    if text is None or text.strip() == "" or text.strip().endswith("%"):
        return text
    return text.strip() + "%"


async def pools_page(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    settings = request.app[SETTINGS]
    params = request.query
    form = {name: params.get(name, "") for name in ("since", "until", "target")}
    try:
        target = read_target(_percent(params.get("target")))
        first, last = read_range(
            params.get("since"),
            params.get("until"),
            today(settings, request.app[CLOCK]()),
            settings.visits.keep_days,
        )
    except SizingError as exc:
        return render(request, "pools.html", 400, user=user, error=str(exc), form=form, pools=[])
    lock = request.app[POOL_ADVICE_LOCK]
    if lock.locked():  # one replay at a time; a reload must not queue another behind it
        busy = "Another pool computation is running; try again in a few seconds."
        return render(request, "pools.html", 503, user=user, error=busy, form=form, pools=[])
    async with lock:
        advice = await pool_advice(request.app[READER], settings, first, last, target)
    return render(
        request,
        "pools.html",
        user=user,
        error="",
        form={
            "since": first.isoformat(),
            "until": last.isoformat(),
            "target": f"{target * 100:g}",
        },
        first=first,
        last=last,
        days=(last - first).days + 1,
        freeze_minutes=settings.freeze_time / 60,
        pools=[pool_view(a, first, last) for a in advice],
        weekdays=WEEKDAYS,
    )


async def _lock(app: web.Application) -> None:
    app[POOL_ADVICE_LOCK] = asyncio.Lock()


def setup(app: web.Application) -> None:
    """The lock the page's computations share."""
    app.on_startup.append(_lock)


def routes() -> list[web.RouteDef]:
    return [web.get("/admin/pools", pools_page)]
