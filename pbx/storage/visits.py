"""Visits and number leases in the database: the adapter behind the visitor API.

Taking a number is a conditional UPDATE of its row in `numbers` ("set my lease where the number
is free"), which PostgreSQL and SQLite both serialise, so several daemons on one PostgreSQL never
hand one number to two sessions. Extending a lease that is far from expiring needs no round
trip: it is acknowledged from this process's cache and written behind, in batches, because no
other session can take the number before the delayed write lands (see LeasePolicy.sync_margin).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.leasing import LeasePolicy, LeaseSpan, Tracking, holder_at
from attribution.rules import choose_pool
from attribution.traffic import TrafficSource, read_source
from pbx.settings import Settings, Site
from pbx.storage.tables import leases, numbers, page_views, sessions, visitors

log = logging.getLogger(__name__)

SESSION_IDLE_TIMEOUT = 30 * 60.0  # a visit ends after 30 minutes without activity, as in GA
FLUSH_INTERVAL = 0.2
CACHE_LIMIT = 200_000


def new_id() -> str:
    """128 random bits: session and visitor ids cannot be guessed or enumerated."""
    return secrets.token_hex(16)


def is_id(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class VisitRequest:
    site: Site
    url: str
    referrer: str | None
    visitor_id: str | None
    session_id: str | None
    client_ip: str | None
    privacy_signal: bool = False


@dataclass(frozen=True)
class Visit:
    """What the visitor API answers: who the visitor is and which number they see."""

    visitor_id: str
    session_id: str
    site: str
    number: str | None  # None: the site's own number
    tracking: Tracking


@dataclass
class _CachedLease:
    visitor_id: str
    site: str
    pool: str | None
    tracking: Tracking
    number: str | None
    lease_id: str | None
    confirmed_until: float  # held_until as last written to the database
    last_url: str
    last_seen: float


@dataclass
class _PendingWrites:
    #: lease id -> (the cached lease, its number, activity time, new held_until)
    extensions: dict[str, tuple[_CachedLease, str, float, float]] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    page_views: list[tuple[str, float, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.extensions or self.last_seen or self.page_views)


@dataclass(frozen=True)
class Holder:
    """The session that held a number at an instant, with what calls are attributed to."""

    session_id: str
    visitor_id: str
    site: str
    pool: str | None
    lease_started_at: float
    row: dict[str, Any]


class VisitStore:
    def __init__(self, engine: AsyncEngine, settings: Settings, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._policy = LeasePolicy(settings.freeze_time)
        self._postgres = engine.dialect.name == "postgresql"
        self._cache: dict[str, _CachedLease] = {}
        self._pending = _PendingWrites()
        self._last_flush_ok = clock()
        self._flush_wakeup = asyncio.Event()

    # -- numbers from the config ------------------------------------------------------------

    async def sync_numbers(self) -> None:
        """Make the `numbers` rows match the config; a removed number keeps its history."""
        wanted = {
            number: (site.name, pool.name)
            for site in self._settings.sites
            for pool in site.pools
            for number in pool.numbers
        }
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(select(numbers.c.number, numbers.c.site, numbers.c.pool))
            ).all()
            have = {r.number: (r.site, r.pool) for r in rows}
            gone = [n for n in have if n not in wanted]
            if gone:
                await conn.execute(numbers.delete().where(numbers.c.number.in_(gone)))
            moved = [
                {"n": n, "site": s, "pool": p}
                for n, (s, p) in wanted.items()
                if n in have and have[n] != (s, p)
            ]
            if moved:
                await conn.execute(
                    update(numbers)
                    .where(numbers.c.number == bindparam("n"))
                    .values(site=bindparam("site"), pool=bindparam("pool")),
                    moved,
                )
            new = [
                {"number": n, "site": s, "pool": p} for n, (s, p) in wanted.items() if n not in have
            ]
            if new:
                await conn.execute(insert(numbers), new)

    # -- the visitor API --------------------------------------------------------------------

    async def start_visit(self, request: VisitRequest) -> Visit:
        """A page load: continue the visitor's session, or start a new one and lease a number."""
        now = self._clock()
        source = read_source(request.url, request.referrer)
        if request.session_id and request.visitor_id:
            continued = await self.ping(
                request.session_id,
                request.visitor_id,
                request.url,
                allowed_sites={request.site.name},
                new_source=source,
            )
            if continued is not None:
                return continued
        async with self._engine.begin() as conn:
            visitor_id, visit_number = await self._visitor(conn, request.visitor_id, source, now)
            session_id = new_id()
            pool = None if request.privacy_signal else choose_pool(request.site.pools, source)
            tracking = Tracking.PRIVACY if request.privacy_signal else Tracking.NO_POOL
            await conn.execute(
                insert(sessions).values(
                    id=session_id,
                    visitor_id=visitor_id,
                    site=request.site.name,
                    visit_number=visit_number,
                    started_at=now,
                    last_seen=now,
                    client_ip=request.client_ip,
                    landing_url=source.landing_url,
                    referrer=source.referrer,
                    source=source.source,
                    medium=source.medium,
                    campaign=source.campaign,
                    term=source.term,
                    content=source.content,
                    click_ids=json.dumps(source.click_ids),
                    pool=pool.name if pool else None,
                    tracking=tracking,
                    pages_viewed=1,
                    last_url=source.landing_url,
                )
            )
            await conn.execute(
                insert(page_views).values(session_id=session_id, at=now, url=request.url)
            )
            cached = _CachedLease(
                visitor_id,
                request.site.name,
                pool.name if pool else None,
                tracking,
                None,
                None,
                0.0,
                source.landing_url,
                now,
            )
            if pool is not None:
                await self._take_number(conn, session_id, cached, request.client_ip, None, now)
        self._remember(session_id, cached)
        return self._visit(session_id, cached)

    async def ping(
        self,
        session_id: str,
        visitor_id: str,
        url: str | None,
        *,
        allowed_sites: Collection[str] | None = None,
        new_source: TrafficSource | None = None,
    ) -> Visit | None:
        """Activity in a session: extend its lease. None: no such live session of this visitor."""
        now = self._clock()
        cached = self._cache.get(session_id)
        if cached is None:
            cached = await self._load(session_id)
        if (
            cached is None
            or cached.visitor_id != visitor_id
            or (allowed_sites is not None and cached.site not in allowed_sites)
            or now - cached.last_seen > SESSION_IDLE_TIMEOUT
        ):
            return None
        if (
            new_source is not None
            and new_source.is_campaign
            and await self._is_new_campaign(session_id, new_source)
        ):
            return None
        if url is not None and url != cached.last_url:
            cached.last_url = url
            self._pending.page_views.append((session_id, now, url[:2048]))
        cached.last_seen = now
        self._pending.last_seen[session_id] = now
        held_until = self._policy.held_until(now)
        if cached.tracking is Tracking.TRACKED and cached.lease_id and cached.number:
            if self._may_write_behind(cached, now):
                self._pending.extensions[cached.lease_id] = (cached, cached.number, now, held_until)
                self._kick_flush()
                return self._visit(session_id, cached)
            async with self._engine.begin() as conn:
                if await self._extend(conn, cached.lease_id, cached.number, now, held_until):
                    cached.confirmed_until = held_until
                    return self._visit(session_id, cached)
                # the lease ran out and the number went to someone else: lease again
                await self._take_number(conn, session_id, cached, None, cached.number, now)
        elif cached.pool is not None and cached.tracking in (Tracking.EXHAUSTED, Tracking.IP_CAP):
            async with self._engine.begin() as conn:
                await self._take_number(conn, session_id, cached, None, None, now)
        self._kick_flush()
        return self._visit(session_id, cached)

    def _may_write_behind(self, cached: _CachedLease, now: float) -> bool:
        flusher_healthy = now - self._last_flush_ok < self._policy.sync_margin / 2
        return flusher_healthy and self._policy.may_extend_unconfirmed(cached.confirmed_until, now)

    async def _is_new_campaign(self, session_id: str, source: TrafficSource) -> bool:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        sessions.c.source,
                        sessions.c.medium,
                        sessions.c.campaign,
                        sessions.c.click_ids,
                    ).where(sessions.c.id == session_id)
                )
            ).one()
        old = TrafficSource(
            row.source, row.medium, row.campaign, click_ids=json.loads(row.click_ids)
        )
        return old.campaign_key() != source.campaign_key()

    # -- lease mechanics --------------------------------------------------------------------

    def _free(self, now: float) -> Any:
        return or_(numbers.c.held_until.is_(None), numbers.c.held_until < now)

    async def _take_number(
        self,
        conn: AsyncConnection,
        session_id: str,
        cached: _CachedLease,
        client_ip: str | None,
        preferred: str | None,
        now: float,
    ) -> None:
        """Lease a free number of the session's pool to it, or mark why it has none."""
        assert cached.pool is not None
        cap = self._settings.http.max_leases_per_ip
        if client_ip is not None:
            held_by_ip = await conn.scalar(
                select(func.count())
                .select_from(numbers)
                .where(numbers.c.client_ip == client_ip, numbers.c.held_until >= now)
            )
            if (held_by_ip or 0) >= cap:
                self._no_number(cached, Tracking.IP_CAP)
                await self._set_tracking(conn, session_id, cached.tracking)
                return
        held_until = self._policy.held_until(now)
        lease_id = new_id()
        for _attempt in range(8):
            number = preferred if preferred else await self._longest_free(conn, cached, now)
            preferred = None
            if number is None:
                break
            taken = await conn.execute(
                update(numbers)
                .where(numbers.c.number == number, self._free(now))
                .values(
                    lease_id=lease_id,
                    session_id=session_id,
                    held_until=held_until,
                    client_ip=client_ip,
                )
            )
            if taken.rowcount == 1:
                await conn.execute(
                    insert(leases).values(
                        id=lease_id,
                        number=number,
                        session_id=session_id,
                        started_at=now,
                        last_activity=now,
                        held_until=held_until,
                    )
                )
                cached.tracking, cached.number, cached.lease_id = Tracking.TRACKED, number, lease_id
                cached.confirmed_until = held_until
                await self._set_tracking(conn, session_id, cached.tracking)
                return
        self._no_number(cached, Tracking.EXHAUSTED)
        await self._set_tracking(conn, session_id, cached.tracking)

    async def _longest_free(
        self, conn: AsyncConnection, cached: _CachedLease, now: float
    ) -> str | None:
        query = (
            select(numbers.c.number)
            .where(numbers.c.site == cached.site, numbers.c.pool == cached.pool, self._free(now))
            .order_by(numbers.c.held_until.asc().nulls_first(), numbers.c.number)
            .limit(1)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        return await conn.scalar(query)

    @staticmethod
    def _no_number(cached: _CachedLease, why: Tracking) -> None:
        cached.tracking, cached.number, cached.lease_id, cached.confirmed_until = (
            why,
            None,
            None,
            0.0,
        )

    @staticmethod
    async def _set_tracking(conn: AsyncConnection, session_id: str, tracking: Tracking) -> None:
        await conn.execute(
            update(sessions).where(sessions.c.id == session_id).values(tracking=tracking)
        )

    @staticmethod
    async def _extend(
        conn: AsyncConnection, lease_id: str, number: str, now: float, held_until: float
    ) -> bool:
        extended = await conn.execute(
            update(numbers)
            .where(
                numbers.c.number == number,
                numbers.c.lease_id == lease_id,
                numbers.c.held_until >= now,
            )
            .values(held_until=held_until)
        )
        if extended.rowcount != 1:
            return False
        await conn.execute(
            update(leases)
            .where(leases.c.id == lease_id)
            .values(last_activity=now, held_until=held_until)
        )
        return True

    async def _visitor(
        self, conn: AsyncConnection, visitor_id: str | None, source: TrafficSource, now: float
    ) -> tuple[str, int]:
        """The returning visitor (their next visit number), or a new one with this first touch."""
        if visitor_id and is_id(visitor_id):
            visits = await conn.scalar(select(visitors.c.visits).where(visitors.c.id == visitor_id))
            if visits is not None:
                await conn.execute(
                    update(visitors).where(visitors.c.id == visitor_id).values(visits=visits + 1)
                )
                return visitor_id, visits + 1
        visitor_id = new_id()
        await conn.execute(
            insert(visitors).values(
                id=visitor_id,
                created_at=now,
                visits=1,
                first_source=source.source,
                first_medium=source.medium,
                first_campaign=source.campaign,
            )
        )
        return visitor_id, 1

    async def _load(self, session_id: str) -> _CachedLease | None:
        if not is_id(session_id):
            return None
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        sessions.c.visitor_id,
                        sessions.c.site,
                        sessions.c.pool,
                        sessions.c.tracking,
                        sessions.c.last_url,
                        sessions.c.last_seen,
                    ).where(sessions.c.id == session_id)
                )
            ).one_or_none()
            if row is None:
                return None
            lease = (
                await conn.execute(
                    select(leases.c.id, leases.c.number, leases.c.held_until)
                    .where(leases.c.session_id == session_id)
                    .order_by(leases.c.started_at.desc())
                    .limit(1)
                )
            ).one_or_none()
        cached = _CachedLease(
            row.visitor_id,
            row.site,
            row.pool,
            Tracking(row.tracking),
            lease.number if lease else None,
            lease.id if lease else None,
            lease.held_until if lease else 0.0,
            row.last_url,
            row.last_seen,
        )
        self._remember(session_id, cached)
        return cached

    def _remember(self, session_id: str, cached: _CachedLease) -> None:
        if len(self._cache) >= CACHE_LIMIT:
            now = self._clock()
            for key in [
                k for k, v in self._cache.items() if now - v.last_seen > SESSION_IDLE_TIMEOUT
            ]:
                del self._cache[key]
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()  # the database has it all; the cache only saves round trips
        self._cache[session_id] = cached

    def _visit(self, session_id: str, cached: _CachedLease) -> Visit:
        return Visit(cached.visitor_id, session_id, cached.site, cached.number, cached.tracking)

    # -- write-behind -----------------------------------------------------------------------

    def _kick_flush(self) -> None:
        self._flush_wakeup.set()

    async def run_flusher(self) -> None:
        """Write the batched lease extensions, last-seen times and page views, forever."""
        while True:
            await self._flush_wakeup.wait()
            await asyncio.sleep(FLUSH_INTERVAL)
            self._flush_wakeup.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("could not write lease extensions; retrying")
                await asyncio.sleep(1.0)
                self._flush_wakeup.set()

    async def flush(self) -> None:
        pending, self._pending = self._pending, _PendingWrites()
        if not pending:
            self._last_flush_ok = self._clock()
            return
        try:
            async with self._engine.begin() as conn:
                if pending.extensions:
                    rows = [
                        {"l": lease_id, "n": number, "a": at, "h": held_until}
                        for lease_id, (
                            _cached,
                            number,
                            at,
                            held_until,
                        ) in pending.extensions.items()
                    ]
                    await conn.execute(
                        update(numbers)
                        .where(
                            numbers.c.number == bindparam("n"), numbers.c.lease_id == bindparam("l")
                        )
                        .values(held_until=bindparam("h")),
                        rows,
                    )
                    await conn.execute(
                        update(leases)
                        .where(leases.c.id == bindparam("l"))
                        .values(last_activity=bindparam("a"), held_until=bindparam("h")),
                        rows,
                    )
                if pending.last_seen:
                    await conn.execute(
                        update(sessions)
                        .where(sessions.c.id == bindparam("s"))
                        .values(last_seen=bindparam("t")),
                        [{"s": s, "t": t} for s, t in pending.last_seen.items()],
                    )
                if pending.page_views:
                    await conn.execute(
                        insert(page_views),
                        [{"session_id": s, "at": at, "url": u} for s, at, u in pending.page_views],
                    )
                    counts: dict[str, tuple[int, str]] = {}
                    for s, _at, u in pending.page_views:
                        counts[s] = (counts.get(s, (0, u))[0] + 1, u)
                    await conn.execute(
                        update(sessions)
                        .where(sessions.c.id == bindparam("s"))
                        .values(
                            pages_viewed=sessions.c.pages_viewed + bindparam("c"),
                            last_url=bindparam("u"),
                        ),
                        [{"s": s, "c": c, "u": u} for s, (c, u) in counts.items()],
                    )
        except Exception:
            self._requeue(pending)
            raise
        for lease_id, (cached, _number, _at, held_until) in pending.extensions.items():
            if cached.lease_id == lease_id:
                cached.confirmed_until = max(cached.confirmed_until, held_until)
        self._last_flush_ok = self._clock()

    def _requeue(self, pending: _PendingWrites) -> None:
        for key, value in pending.extensions.items():
            self._pending.extensions.setdefault(key, value)
        for key, at in pending.last_seen.items():
            self._pending.last_seen.setdefault(key, at)
        self._pending.page_views[:0] = pending.page_views

    # -- reading leases back ----------------------------------------------------------------

    async def holder_at(self, number: str, at: float) -> Holder | None:
        """The session that held `number` at instant `at`, for attributing a call."""
        await self.flush()
        async with self._engine.connect() as conn:
            spans = (
                await conn.execute(
                    select(
                        leases.c.id,
                        leases.c.number,
                        leases.c.session_id,
                        leases.c.started_at,
                        leases.c.held_until,
                    ).where(
                        leases.c.number == number,
                        leases.c.started_at <= at,
                        leases.c.held_until >= at,
                    )
                )
            ).all()
            span = holder_at(
                (
                    LeaseSpan(s.id, s.number, s.session_id, s.started_at, s.held_until)
                    for s in spans
                ),
                at,
            )
            if span is None:
                return None
            row = (
                await conn.execute(
                    select(
                        sessions,
                        visitors.c.first_source,
                        visitors.c.first_medium,
                        visitors.c.first_campaign,
                    )
                    .join(visitors, visitors.c.id == sessions.c.visitor_id)
                    .where(sessions.c.id == span.session_id)
                )
            ).one()
        data = dict(row._mapping)
        return Holder(
            span.session_id, data["visitor_id"], data["site"], data["pool"], span.started_at, data
        )

    async def current_leases(self) -> Sequence[dict[str, Any]]:
        """Numbers held now, with the session holding each (for staff and `calltrack pools`)."""
        now = self._clock()
        await self.flush()
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        numbers.c.number,
                        numbers.c.site,
                        numbers.c.pool,
                        numbers.c.session_id,
                        numbers.c.held_until,
                        sessions.c.visitor_id,
                        sessions.c.source,
                        sessions.c.medium,
                        sessions.c.campaign,
                        sessions.c.term,
                        sessions.c.content,
                        sessions.c.landing_url,
                        sessions.c.started_at,
                    )
                    .outerjoin(sessions, sessions.c.id == numbers.c.session_id)
                    .order_by(numbers.c.site, numbers.c.pool, numbers.c.number)
                )
            ).all()
        return [{**dict(r._mapping), "held": self._policy.is_held(r.held_until, now)} for r in rows]
