"""What the pool advice reads: each pool's visits and calls over a range (issue 13).

Three range reads, whatever the number of pools: the visits that asked a pool for a number
(`session_pools`, with their session's last activity), the calls to pool and fallback numbers
(with the last activity of the session credited before the call), and the likeliest candidate
of each probable match (with the end of its lease). The arithmetic is
`attribution/pool_advice.py`'s.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.leasing import Tracking
from attribution.owner import Attribution
from attribution.pool_advice import PoolCall, PoolRecord, PoolVisits
from attribution.site_plan import SitePlan
from pbx.settings import Settings
from pbx.storage.tables import call_candidates, calls, page_views, session_pools, sessions

_POOL_CALLS = (Attribution.SESSION, Attribution.PROBABLE, Attribution.UNKNOWN)
_UNHELD = (Attribution.PROBABLE, Attribution.UNKNOWN)
Key = tuple[str, str]
#: the credited session's latest page view at or before its call's start
_LAST_VIEW_BEFORE_CALL = (
    select(func.max(page_views.c.at))
    .where(page_views.c.session_id == calls.c.session_id, page_views.c.at <= calls.c.started_at)
    .scalar_subquery()
)
PART = 5000  # rows handled between two turns of the event loop
#: a stored tracking word as the enum: a dict lookup, not an Enum call, per row of a million
_TRACKING = {str(t): t for t in Tracking}


async def pool_records(
    engine: AsyncEngine, settings: Settings, since: float, until: float
) -> list[PoolRecord]:
    """Every configured pool's record over [since, until), in the config's order."""
    async with engine.connect() as conn:
        visit_rows = await conn.stream(
            select(
                session_pools.c.site,
                session_pools.c.pool,
                session_pools.c.started_at,
                sessions.c.last_seen,
                session_pools.c.tracking,
                session_pools.c.refused,
            )
            .join(sessions, sessions.c.id == session_pools.c.session_id)
            .where(session_pools.c.started_at >= since, session_pools.c.started_at < until)
            # in the replay's order: arrival (the index's), then last activity (the ties'
            # few sorted apart), so that it need not sort a copy of a million visits
            .order_by(session_pools.c.started_at, sessions.c.last_seen)
        )
        visits: defaultdict[Key, PoolVisits] = defaultdict(PoolVisits)
        # in parts: the event loop serves visitors and Asterisk between them (a month of a
        # busy site is a million rows)
        async for part in visit_rows.partitions(PART):
            for site, pool, started_at, last_seen, tracking, refused in part:
                refusal = _TRACKING[refused] if refused is not None else None
                visits[site, pool].append(started_at, last_seen, _TRACKING[tracking], refusal)

        call_rows = await conn.execute(
            select(
                calls.c.id,
                calls.c.started_at,
                calls.c.attribution,
                calls.c.site,
                calls.c.pool,
                sessions.c.last_seen,
                sessions.c.started_at,
                _LAST_VIEW_BEFORE_CALL,
            )
            .outerjoin(sessions, sessions.c.id == calls.c.session_id)
            .where(
                calls.c.started_at >= since,
                calls.c.started_at < until,
                calls.c.attribution.in_([*_POOL_CALLS, Attribution.FALLBACK]),
            )
            .order_by(calls.c.started_at)
        )
        freeze = settings.freeze_time
        delays: defaultdict[Key, list[float]] = defaultdict(list)
        probable: defaultdict[Key, int] = defaultdict(int)
        fallback: defaultdict[str, list[PoolCall]] = defaultdict(list)
        unheld: defaultdict[Key, list[PoolCall]] = defaultdict(list)
        probable_calls: dict[int, Key] = {}
        for call_id, started_at, attribution, site, pool, last_seen, began, viewed in call_rows:
            if attribution == Attribution.FALLBACK:
                fallback[site].append(PoolCall(call_id, started_at))
            elif pool is None:
                continue  # a number no pool has (unknown DIDs)
            elif attribution == Attribution.SESSION and last_seen is not None:
                delay = started_at - last_seen
                if last_seen > started_at:
                    # active again after the call began (the page kept open, or back to it):
                    # its last activity before the call is not kept. It was no earlier than its
                    # last page view then, and the freeze in use caught the call: the smaller
                    # of the two (at worst later than it was, so a shorter freeze is never
                    # credited with it wrongly, and the freeze in use never said to miss it)
                    delay = min(started_at - max(began, viewed or began), freeze)
                delays[site, pool].append(delay)
            elif attribution in _UNHELD:
                unheld[site, pool].append(PoolCall(call_id, started_at))
                if attribution == Attribution.PROBABLE:
                    probable_calls[call_id] = (site, pool)

        # a probable match's likeliest candidate: its last activity, unless the visitor came
        # back after the call; then its lease's end less the freeze time (the one in force
        # now: the lease does not keep its own)
        candidate_rows = await conn.execute(
            select(
                call_candidates.c.call_id,
                calls.c.started_at,
                call_candidates.c.released_at,
                sessions.c.last_seen,
            )
            .join(calls, calls.c.id == call_candidates.c.call_id)
            .join(sessions, sessions.c.id == call_candidates.c.session_id)
            .where(
                calls.c.started_at >= since,
                calls.c.started_at < until,
                calls.c.attribution == Attribution.PROBABLE,
            )
            .order_by(call_candidates.c.call_id, call_candidates.c.likelihood.desc())
        )
        seen: set[int] = set()
        for call_id, started_at, released_at, last_seen in candidate_rows:
            key = probable_calls.get(call_id)
            if key is not None and call_id not in seen:
                seen.add(call_id)
                last = last_seen if last_seen <= started_at else released_at - freeze
                delays[key].append(started_at - last)
                probable[key] += 1

    records = []
    for site in settings.sites:
        plan = SitePlan.from_settings(settings, site)
        showing = [p.name for p in plan.pools if plan.shows_fallback(p)]
        for pool, pool_plan in zip(site.pools, plan.pools, strict=True):
            key = (site.name, pool.name)
            records.append(
                PoolRecord(
                    site=site.name,
                    pool=pool.name,
                    numbers=len(pool.numbers),
                    since=since,
                    until=until,
                    visits=visits.get(key, []),
                    call_delays=delays.get(key, []),
                    probable_calls=probable.get(key, 0),
                    fallback_calls=fallback.get(site.name, [])
                    if plan.shows_fallback(pool_plan)
                    else [],
                    unheld_calls=unheld.get(key, []),
                    fallback_shared_with=tuple(p for p in showing if p != pool.name)
                    if plan.shows_fallback(pool_plan)
                    else (),
                )
            )
    return records
