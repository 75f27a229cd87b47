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
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.leasing import LeasePolicy, LeaseSpan, Tracking, holder_at
from attribution.rules import choose_pool
from attribution.traffic import TrafficSource, read_source
from pbx.settings import Settings, Site
from pbx.storage.db import Transactions, Tx, checkpoint
from pbx.storage.tables import leases, numbers, page_views, sessions, visitors

log = logging.getLogger(__name__)

SESSION_IDLE_TIMEOUT = 30 * 60.0  # a visit ends after 30 minutes without activity, as in GA
FLUSH_INTERVAL = 0.2
CHECKPOINT_INTERVAL = 1.0  # SQLite: WAL into the database file (see db.checkpoint)
CACHE_LIMIT = 200_000


def new_id() -> str:
    """128 random bits: session and visitor ids cannot be guessed or enumerated."""
    return secrets.token_hex(16)


def is_id(value: object) -> bool:
    # strip() leaves nothing exactly when every character is a lowercase hex digit
    return isinstance(value, str) and len(value) == 32 and not value.strip("0123456789abcdef")


# The statements of the hot paths, built once: SQLAlchemy then finds them in its compiled cache
# without generating a cache key per call, which costs more than SQLite runs them in.
_INSERT_VISITOR = insert(visitors)
_INSERT_SESSION = insert(sessions)
_INSERT_PAGE_VIEW = insert(page_views)
_INSERT_LEASE = insert(leases)
_RETURNING_VISITOR = (
    update(visitors)
    .where(visitors.c.id == bindparam("vid"))
    .values(visits=visitors.c.visits + 1)
    .returning(visitors.c.visits)
)
_HELD_BY_IP = (
    select(func.count())
    .select_from(numbers)
    .where(numbers.c.client_ip == bindparam("ip"), numbers.c.held_until >= bindparam("now"))
)
_SET_LEASE: dict[str, Any] = {
    "lease_id": bindparam("lid"),
    "session_id": bindparam("sid"),
    "held_until": bindparam("until"),
    "client_ip": bindparam("ip"),
}
#: take a number that is free now (never leased, or its lease ran out)
_TAKE_FREE = (
    update(numbers)
    .where(
        numbers.c.number == bindparam("n"),
        or_(numbers.c.held_until.is_(None), numbers.c.held_until < bindparam("now")),
    )
    .values(**_SET_LEASE)
)
#: take a number that has never been leased (see VisitStore._unused)
_TAKE_UNUSED = (
    update(numbers)
    .where(numbers.c.number == bindparam("n"), numbers.c.held_until.is_(None))
    .values(**_SET_LEASE)
)
_SET_TRACKING = (
    update(sessions).where(sessions.c.id == bindparam("sid")).values(tracking=bindparam("t"))
)
_UNUSED = select(numbers.c.number).where(
    numbers.c.site == bindparam("site"),
    numbers.c.pool == bindparam("pool"),
    numbers.c.held_until.is_(None),
)
#: free the longest first: never leased, then the earliest expired; then by number
_LONGEST_FREE = (
    select(numbers.c.number)
    .where(
        numbers.c.site == bindparam("site"),
        numbers.c.pool == bindparam("pool"),
        or_(numbers.c.held_until.is_(None), numbers.c.held_until < bindparam("now")),
    )
    .order_by(numbers.c.held_until.asc().nulls_first(), numbers.c.number)
    .limit(1)
)
_LONGEST_FREE_SKIP_LOCKED = _LONGEST_FREE.with_for_update(skip_locked=True)
# the write-behind batches (see VisitStore.flush)
_FLUSH_NUMBERS = (
    update(numbers)
    .where(numbers.c.number == bindparam("n"), numbers.c.lease_id == bindparam("l"))
    .values(held_until=bindparam("h"))
)
_FLUSH_LEASES = (
    update(leases)
    .where(leases.c.id == bindparam("l"))
    .values(last_activity=bindparam("a"), held_until=bindparam("h"))
)
_FLUSH_LAST_SEEN = (
    update(sessions).where(sessions.c.id == bindparam("s")).values(last_seen=bindparam("t"))
)
_FLUSH_VIEWED = (
    update(sessions)
    .where(sessions.c.id == bindparam("s"))
    .values(pages_viewed=sessions.c.pages_viewed + bindparam("c"), last_url=bindparam("u"))
)
_EXTEND_NUMBER = (
    update(numbers)
    .where(
        numbers.c.number == bindparam("n"),
        numbers.c.lease_id == bindparam("lid"),
        numbers.c.held_until >= bindparam("now"),
    )
    .values(held_until=bindparam("until"))
)
_EXTEND_LEASE = (
    update(leases)
    .where(leases.c.id == bindparam("lid"))
    .values(last_activity=bindparam("now"), held_until=bindparam("until"))
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


@dataclass(frozen=True)
class _Outcome:
    """What taking a number came to, made in a transaction and applied to the cache after it
    (on SQLite the transaction runs in another thread, where the cache is not touched)."""

    tracking: Tracking
    number: str | None = None
    lease_id: str | None = None
    held_until: float = 0.0

    def apply(self, cached: _CachedLease) -> None:
        cached.tracking, cached.number, cached.lease_id, cached.confirmed_until = (
            self.tracking,
            self.number,
            self.lease_id,
            self.held_until,
        )


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
        self._transactions = Transactions(engine)
        self._settings = settings
        self._clock = clock
        self._policy = LeasePolicy(settings.freeze_time)
        self._postgres = engine.dialect.name == "postgresql"
        self._cache: dict[str, _CachedLease] = {}
        #: SQLite only: per (site, pool), the numbers never leased when last read, largest
        #: first. Ordering a pool by "free the longest, then by number" makes SQLite sort every
        #: never-leased row of it per lease (milliseconds for a pool of thousands), so the
        #: smallest never-leased number is taken from here instead; see _candidate.
        self._unused: dict[tuple[str, str], list[str]] = {}
        self._pending = _PendingWrites()
        self._last_flush_ok = clock()
        self._flush_wakeup = asyncio.Event()

    def close(self) -> None:
        """Close the connection the short transactions use (SQLite)."""
        self._transactions.close()

    # -- numbers from the config ------------------------------------------------------------

    async def sync_numbers(self) -> None:
        """Make the `numbers` rows match the config; a removed number keeps its history."""
        self._unused.clear()
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
        pool = None if request.privacy_signal else choose_pool(request.site.pools, source)
        tracking = Tracking.PRIVACY if request.privacy_signal else Tracking.NO_POOL
        session_id = new_id()

        def work(tx: Tx) -> tuple[str, _Outcome]:
            visitor_id, visit_number = self._visitor(tx, request.visitor_id, source, now)
            session = {
                "id": session_id,
                "visitor_id": visitor_id,
                "site": request.site.name,
                "visit_number": visit_number,
                "started_at": now,
                "last_seen": now,
                "client_ip": request.client_ip,
                "landing_url": source.landing_url,
                "referrer": source.referrer,
                "source": source.source,
                "medium": source.medium,
                "campaign": source.campaign,
                "term": source.term,
                "content": source.content,
                "click_ids": json.dumps(source.click_ids),
                "pool": pool.name if pool else None,
                "tracking": str(tracking),
                "pages_viewed": 1,
                "last_url": source.landing_url,
            }
            outcome = _Outcome(tracking)
            if pool is not None:
                # the session row is written by _take_number, with the outcome in it
                outcome = self._take_number(
                    tx,
                    session_id,
                    request.site.name,
                    pool.name,
                    request.client_ip,
                    None,
                    now,
                    new_session=session,
                )
            else:
                tx.run(_INSERT_SESSION, session)
            tx.run(_INSERT_PAGE_VIEW, {"session_id": session_id, "at": now, "url": request.url})
            return visitor_id, outcome

        visitor_id, outcome = await self._transactions.run(work)
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
        outcome.apply(cached)
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
            lease_id, number = cached.lease_id, cached.number
            site, pool = cached.site, cached.pool

            def extend_or_lease_again(tx: Tx) -> _Outcome | None:
                if self._extend(tx, lease_id, number, now, held_until):
                    return None
                # the lease ran out and the number went to someone else: lease again
                assert pool is not None
                return self._take_number(tx, session_id, site, pool, None, number, now)

            outcome = await self._transactions.run(extend_or_lease_again)
            if outcome is None:
                cached.confirmed_until = held_until
                return self._visit(session_id, cached)
            outcome.apply(cached)
        elif cached.pool is not None and cached.tracking in (Tracking.EXHAUSTED, Tracking.IP_CAP):
            site, pool = cached.site, cached.pool
            outcome = await self._transactions.run(
                lambda tx: self._take_number(tx, session_id, site, pool, None, None, now),
            )
            outcome.apply(cached)
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

    def _take_number(
        self,
        tx: Tx,
        session_id: str,
        site: str,
        pool: str,
        client_ip: str | None,
        preferred: str | None,
        now: float,
        *,
        new_session: dict[str, Any] | None = None,
    ) -> _Outcome:
        """Lease a free number of the pool to the session, or say why it has none.

        `new_session`: the row of a session being started, inserted here with the outcome as its
        tracking (one statement fewer per visit than inserting it first and updating it after).
        """
        outcome = self._claim(tx, session_id, site, pool, client_ip, preferred, now)
        if new_session is not None:
            tx.run(_INSERT_SESSION, {**new_session, "tracking": str(outcome.tracking)})
        else:
            tx.run(_SET_TRACKING, {"sid": session_id, "t": str(outcome.tracking)})
        if outcome.number is not None:
            tx.run(
                _INSERT_LEASE,
                {
                    "id": outcome.lease_id,
                    "number": outcome.number,
                    "session_id": session_id,
                    "started_at": now,
                    "last_activity": now,
                    "held_until": outcome.held_until,
                },
            )
        return outcome

    def _claim(
        self,
        tx: Tx,
        session_id: str,
        site: str,
        pool: str,
        client_ip: str | None,
        preferred: str | None,
        now: float,
    ) -> _Outcome:
        """Take a number's row for the session: the conditional UPDATE that makes it exclusive."""
        cap = self._settings.http.max_leases_per_ip
        if client_ip is not None:
            held_by_ip = tx.scalar(_HELD_BY_IP, {"ip": client_ip, "now": now})
            if (held_by_ip or 0) >= cap:
                return _Outcome(Tracking.IP_CAP)
        held_until = self._policy.held_until(now)
        lease_id = new_id()
        lease = {"lid": lease_id, "sid": session_id, "until": held_until, "ip": client_ip}
        for _attempt in range(8):
            unused = False
            number: str | None
            if preferred:
                number, preferred = preferred, None
            else:
                number, unused = self._candidate(tx, site, pool, now)
            if number is None:
                break
            taken = tx.run(
                _TAKE_UNUSED if unused else _TAKE_FREE, {**lease, "n": number, "now": now}
            )
            if unused:
                self._used(site, pool, number, taken == 1)
            if taken == 1:
                return _Outcome(Tracking.TRACKED, number, lease_id, held_until)
        return _Outcome(Tracking.EXHAUSTED)

    def _candidate(self, tx: Tx, site: str, pool: str, now: float) -> tuple[str | None, bool]:
        """The number to try to lease next, and whether it comes from the never-leased list.

        The never-leased numbers sort first ("free the longest"), smallest number first. On
        SQLite they are read once per pool into `_unused` and handed out from there; the
        UPDATE then requires the row to be still never leased, and if it is not (another
        process took it) the list is read again (_used), so the order is kept. PostgreSQL
        keeps the query with SKIP LOCKED, which lets concurrent transactions pass each other.
        """
        if not self._postgres:
            unused = self._unused.get((site, pool))
            if unused is None:
                rows = tx.scalars(_UNUSED, {"site": site, "pool": pool})
                unused = self._unused[(site, pool)] = sorted(rows, reverse=True)
            if unused:
                return unused[-1], True
        query = _LONGEST_FREE_SKIP_LOCKED if self._postgres else _LONGEST_FREE
        return tx.scalar(query, {"site": site, "pool": pool, "now": now}), False

    def _used(self, site: str, pool: str, number: str, taken: bool) -> None:
        """The never-leased `number` was tried: it is never-leased no more, whoever took it."""
        unused = self._unused.get((site, pool))
        if not taken:
            self._unused.pop((site, pool), None)  # another process leases from it: read again
        elif unused and unused[-1] == number:
            unused.pop()

    @staticmethod
    def _extend(tx: Tx, lease_id: str, number: str, now: float, held_until: float) -> bool:
        params = {"lid": lease_id, "n": number, "now": now, "until": held_until}
        if tx.run(_EXTEND_NUMBER, params) != 1:
            return False
        tx.run(_EXTEND_LEASE, params)
        return True

    @staticmethod
    def _visitor(
        tx: Tx, visitor_id: str | None, source: TrafficSource, now: float
    ) -> tuple[str, int]:
        """The returning visitor (their next visit number), or a new one with this first touch."""
        if visitor_id and is_id(visitor_id):
            visits = tx.scalar(_RETURNING_VISITOR, {"vid": visitor_id})
            if visits is not None:
                return visitor_id, visits
        visitor_id = new_id()
        tx.run(
            _INSERT_VISITOR,
            {
                "id": visitor_id,
                "created_at": now,
                "visits": 1,
                "first_source": source.source,
                "first_medium": source.medium,
                "first_campaign": source.campaign,
            },
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
        """Write the batched lease extensions, last-seen times and page views, forever.

        On SQLite also checkpoint the WAL now and then: transactions commit in the event loop
        with automatic checkpoints off, so that their fsync happens in aiosqlite's thread.
        """
        checkpointed = time.monotonic()
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
                continue
            if time.monotonic() - checkpointed >= CHECKPOINT_INTERVAL:
                checkpointed = time.monotonic()
                try:
                    await checkpoint(self._engine)
                except Exception:
                    log.exception("could not checkpoint the database; will try again")

    async def flush(self) -> None:
        pending, self._pending = self._pending, _PendingWrites()
        if not pending:
            self._last_flush_ok = self._clock()
            return
        extensions = [
            {"l": lease_id, "n": number, "a": at, "h": held_until}
            for lease_id, (_cached, number, at, held_until) in pending.extensions.items()
        ]
        last_seen = [{"s": s, "t": t} for s, t in pending.last_seen.items()]
        views = [{"session_id": s, "at": at, "url": u} for s, at, u in pending.page_views]
        counts: dict[str, tuple[int, str]] = {}
        for s, _at, u in pending.page_views:
            counts[s] = (counts.get(s, (0, u))[0] + 1, u)
        viewed = [{"s": s, "c": c, "u": u} for s, (c, u) in counts.items()]

        def write(tx: Tx) -> None:
            for statement, rows in (
                (_FLUSH_NUMBERS, extensions),
                (_FLUSH_LEASES, extensions),
                (_FLUSH_LAST_SEEN, last_seen),
                (_INSERT_PAGE_VIEW, views),
                (_FLUSH_VIEWED, viewed),
            ):
                if rows:
                    tx.run_many(statement, rows)

        try:
            await self._transactions.run(write)
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

    async def page_views(self, session_id: str, limit: int = 200) -> Sequence[dict[str, Any]]:
        """The pages a session viewed, in order (its journey before the call)."""
        await self.flush()
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(page_views.c.at, page_views.c.url)
                .where(page_views.c.session_id == session_id)
                .order_by(page_views.c.at, page_views.c.id)
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]
