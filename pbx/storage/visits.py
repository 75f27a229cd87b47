"""Visits and their number leases in the database: the adapter behind the visitor API.

Which pools a visit leases from and which numbers it sees are the core's rules
(attribution.site_plan), and so is when a session goes on (attribution.sessions); this module
keeps sessions in a cache and in the database. Taking a number is number_claims' conditional
UPDATE; extending a lease far from expiry is written behind (write_behind).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, and_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.ad_clients import AdClientIds
from attribution.clients import client_network
from attribution.leasing import REFUSED, Tracking
from attribution.owner import Holder
from attribution.sessions import CampaignKey, SessionRule, campaign_key
from attribution.site_plan import SitePlan, Slot, SlotOutcome
from attribution.traffic import MAX_URL, TrafficSource, read_source
from pbx.ratelimit import HourlyCount
from pbx.settings import Settings, Site
from pbx.storage import lease_history
from pbx.storage.db import Transactions, Tx
from pbx.storage.errors import is_transient
from pbx.storage.health import WriteHealth
from pbx.storage.number_claims import Claim, HeldNumber, NumberClaims, new_id
from pbx.storage.tables import leases, numbers, page_views, session_pools, sessions, visitors
from pbx.storage.visit_rollups import VisitRollups, landing_and_referrer
from pbx.storage.write_behind import WriteBehind

CACHE_LIMIT = 200_000
#: a cached session not seen for this many ping intervals is dropped from the cache (the
#: database has it; a later ping reads it back): a closed tab stops pinging, and without this
#: the cache, and the process's memory, would grow with every visit until CACHE_LIMIT
CACHE_IDLE_PINGS = 4

log = logging.getLogger(__name__)

_INSERT_VISITOR = insert(visitors)
_INSERT_SESSION = insert(sessions)
_INSERT_SESSION_POOL = insert(session_pools)
_INSERT_PAGE_VIEW = insert(page_views)
_RETURNING_VISITOR = (
    update(visitors)
    .where(visitors.c.id == bindparam("vid"))
    .values(visits=visitors.c.visits + 1)
    .returning(visitors.c.visits)
)
_SET_TRACKING = (
    update(sessions).where(sessions.c.id == bindparam("sid")).values(tracking=bindparam("t"))
)
#: ids the row lacks are filled in; one it has is kept (another daemon may have filled it)
_FILL_AD_IDS = (
    update(sessions)
    .where(sessions.c.id == bindparam("sid"))
    .values(
        ga_client_id=func.coalesce(sessions.c.ga_client_id, bindparam("ga_client_id")),
        ym_client_id=func.coalesce(sessions.c.ym_client_id, bindparam("ym_client_id")),
    )
)
_SET_POOL_TRACKING = (
    update(session_pools)
    .where(session_pools.c.session_id == bindparam("sid"), session_pools.c.pool == bindparam("p"))
    .values(
        tracking=bindparam("t"),
        refused=func.coalesce(session_pools.c.refused, bindparam("r", type_=String)),
    )
)


#: a session this process has not cached, in one query (one round trip on PostgreSQL, where
#: pings of a session come to any of several daemons): its row, how many page views it kept,
#: and a row per pool with each of the pool's leases, oldest first (the last is the newest)
_LOAD = (
    select(
        sessions.c.visitor_id,
        sessions.c.site,
        sessions.c.client_ip,
        sessions.c.source,
        sessions.c.medium,
        sessions.c.campaign,
        sessions.c.click_ids,
        sessions.c.pool.label("first_pool"),
        sessions.c.tracking,
        sessions.c.last_url,
        sessions.c.last_seen,
        sessions.c.ga_client_id,
        sessions.c.ym_client_id,
        select(func.count())
        .where(page_views.c.session_id == sessions.c.id)
        .scalar_subquery()
        .label("pages_kept"),
        session_pools.c.pool,
        session_pools.c.replaces,
        session_pools.c.tracking.label("pool_tracking"),
        leases.c.id.label("lease_id"),
        leases.c.number,
        leases.c.held_until,
    )
    .select_from(
        sessions.outerjoin(session_pools, session_pools.c.session_id == sessions.c.id).outerjoin(
            leases.join(numbers, numbers.c.number == leases.c.number),
            and_(leases.c.session_id == sessions.c.id, numbers.c.pool == session_pools.c.pool),
        )
    )
    .where(sessions.c.id == bindparam("sid"))
    .order_by(session_pools.c.pool, leases.c.started_at, leases.c.id)  # ids: in time order
)


def is_id(value: object) -> bool:
    # strip() leaves nothing exactly when every character is a lowercase hex digit
    return isinstance(value, str) and len(value) == 32 and not value.strip("0123456789abcdef")


#: why a page view was counted but not kept (the page_views_not_kept metric's `reason`)
SESSION_LIMIT = "session_limit"
NETWORK_BUDGET = "network_budget"
BACKLOG = "backlog"  # the database away, and the views waiting for it at their cap


class TooManyVisits(Exception):
    """The client started `http.max_new_visits_per_ip` visits this hour; nothing was stored."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many new visits; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class VisitRequest:
    site: Site
    url: str
    referrer: str | None
    visitor_id: str | None
    session_id: str | None
    client_ip: str | None
    privacy_signal: bool = False
    ad_ids: AdClientIds = field(default_factory=AdClientIds)


@dataclass(slots=True)
class AnswerMemo:
    """What the visitor API made of a visit's numbers (its encoded answer), kept with the cached
    session: it is dropped with the session, and a new, empty one replaces it whenever the
    numbers shown change, so an answer is never older than the numbers it shows."""

    body: bytes | None = None


@dataclass(frozen=True)
class Visit:
    """What the visitor API answers: who the visitor is and which numbers they see."""

    visitor_id: str
    session_id: str
    site: str
    shown: Mapping[str, str]  # own number (E.164) -> the number shown instead
    tracking: Tracking  # of the first pool (the privacy or no-pool reason when none)
    memo: AnswerMemo = field(default_factory=AnswerMemo, compare=False)

    @property
    def number(self) -> str | None:
        """The number shown for the site's first own number; None: its own number."""
        return next(iter(self.shown.values()), None)


@dataclass(slots=True)  # one per live session: no per-instance __dict__
class _CachedSession:
    visitor_id: str
    site: str
    client: str | None  # the network the session started from (attribution.clients)
    campaign: CampaignKey
    tracking: Tracking
    held: list[HeldNumber]
    last_url: str
    last_seen: float
    pages_kept: int
    shown: Mapping[str, str] = field(default_factory=dict)  # kept in step with `held`
    memo: AnswerMemo = field(default_factory=AnswerMemo)  # renewed with `shown`
    ad_ids: AdClientIds = field(default_factory=AdClientIds)
    renewing: asyncio.Lock | None = None  # made on the first renewal
    #: the last `last_seen` handed to the write-behind (what the database has, or will)
    seen_written: float = 0.0
    #: a session with a pool that gave no number (exhausted, the client's cap) asks the
    #: database again no sooner than this: not in a transaction at every ping of every tab
    retry_at: float = 0.0

    def __post_init__(self) -> None:
        self.seen_written = self.last_seen


class VisitStore:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        clock: Callable[[], float],
        view_not_kept: Callable[[str], None] = lambda _why: None,
    ) -> None:
        """`view_not_kept` is told of each page view counted but not kept, and why: the
        session's `visits.max_page_views`, its network's `http.max_page_views_per_ip`, or the
        backlog of views waiting for a database that is away."""
        self._engine = engine
        self._view_not_kept = view_not_kept
        postgres = engine.dialect.name == "postgresql"
        #: reads on PostgreSQL outside a transaction: a one-statement read needs no BEGIN and
        #: ROLLBACK, two round trips more (on SQLite, one daemon, a cache miss is rare)
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if postgres else engine
        )
        #: what the writes below last met; /healthz shows it
        self.health = WriteHealth(clock)
        self.transactions = Transactions(engine, self.health)
        self._settings = settings
        self._clock = clock
        self._policy = settings.lease_policy
        self._rule = SessionRule()
        self._plans = {site.name: SitePlan.from_settings(settings, site) for site in settings.sites}
        self._claims = NumberClaims(settings, self._policy, postgres)
        self._writes = WriteBehind(engine, self.transactions, clock)
        self._rollups = VisitRollups(settings, postgres)
        #: least recently active first (moved to the end on every activity), so the idle ones
        #: are dropped from the front without a scan
        self._cache: OrderedDict[str, _CachedSession] = OrderedDict()
        self._cache_idle = CACHE_IDLE_PINGS * settings.http.ping_interval
        # half a ping interval: a session's own pings each look, those of its other tabs not
        self._retry_pace = settings.http.ping_interval / 2
        #: what one client may make us store: new sessions and page views kept per hour (page
        #: views per session and URL lengths are capped where they are kept)
        self._new_visits = HourlyCount(clock, settings.http.max_new_visits_per_ip)
        self._kept_views = HourlyCount(clock, settings.http.max_page_views_per_ip)

    def close(self) -> None:
        """Close the connection the short transactions use (SQLite)."""
        self.transactions.close()

    def plan(self, site: str) -> SitePlan:
        """What the site shows and leases (its own numbers, how it writes them, its pools)."""
        return self._plans[site]

    async def sync_numbers(self) -> None:
        """Make the `numbers` rows match the config; a removed number keeps its history."""
        await self._claims.sync_numbers(self._engine)

    # -- the visitor API --------------------------------------------------------------------

    async def start_visit(self, request: VisitRequest) -> Visit:
        """A page load: continue the visitor's session, or start a new one and lease numbers."""
        now = self._clock()
        source = read_source(request.url, request.referrer)
        if request.session_id and request.visitor_id:
            continued = await self._activity(
                request.session_id,
                request.visitor_id,
                request.url,
                {request.site.name},
                arrival=source,
                privacy=request.privacy_signal,
            )
            if continued is not None:
                await self._fill_ad_ids(request.session_id, request.ad_ids)
                return continued
        client = client_network(request.client_ip) if request.client_ip else None
        retry_after = self._new_visits.take(client or "")
        if retry_after:
            raise TooManyVisits(retry_after)
        plan = self._plans[request.site.name]
        slots = [] if request.privacy_signal else plan.slots(source)
        session_id = new_id()
        places = landing_and_referrer(source.landing_url, source.referrer)
        written: list[tuple[str, list[HeldNumber]]] = []  # what the work wrote, if it ran whole

        def work(tx: Tx) -> tuple[str, list[HeldNumber]]:
            if slots:
                self._claims.lock_client(tx, client)
            visitor_id, visit_number = self._visitor(tx, request.visitor_id, source, now)
            # numbers first (the session's row then carries what came of it), its rows after
            claims = [
                self._claims.take(tx, session_id, plan.name, slot.pool, client, None, now)
                for slot in slots
            ]
            held = [_held(slot, claim) for slot, claim in zip(slots, claims, strict=True)]
            tracking = _tracking(held, request.privacy_signal)
            tx.run(
                _INSERT_SESSION,
                {
                    "id": session_id,
                    "visitor_id": visitor_id,
                    "site": plan.name,
                    "visit_number": visit_number,
                    "started_at": now,
                    "last_seen": now,
                    "client_ip": request.client_ip,
                    "landing_url": source.landing_url,
                    "referrer": source.referrer,
                    "landing_path": places[0],
                    "referrer_host": places[1],
                    "source": source.source,
                    "medium": source.medium,
                    "campaign": source.campaign,
                    "term": source.term,
                    "content": source.content,
                    "click_ids": json.dumps(source.click_ids),
                    "pool": held[0].pool if held else None,
                    "tracking": str(tracking),
                    "pages_viewed": 1,
                    "last_url": source.landing_url,
                    **request.ad_ids.columns(),
                },
            )
            for claim in claims:
                self._claims.record(tx, session_id, claim, now)
            for h in held:
                tx.run(
                    _INSERT_SESSION_POOL,
                    {
                        "session_id": session_id,
                        "pool": h.pool,
                        "site": plan.name,
                        "replaces": ",".join(h.replaces),
                        "tracking": str(h.tracking),
                        "refused": _refusal(h.tracking),
                        "started_at": now,
                    },
                )
            tx.run(
                _INSERT_PAGE_VIEW,
                {"session_id": session_id, "at": now, "url": request.url[:MAX_URL]},
            )
            pool = held[0].pool if held else None
            self._rollups.count(tx, session_id, plan.name, pool, source, now, places)
            written.append((visitor_id, held))
            return visitor_id, held

        try:
            visitor_id, held = await self.transactions.run(work)
        except Exception as error:
            # the connection lost at COMMIT (a PostgreSQL restart): the transaction may have
            # been committed. Answered with the site's own numbers, the visitor's next page
            # would start a second session while this one held its numbers and counted a visit
            if not (written and is_transient(error) and await self._is_stored(session_id)):
                raise
            log.warning("a new visit's commit was answered with %s, but it was stored", error)
            visitor_id, held = written[0]
        cached = _CachedSession(
            visitor_id,
            plan.name,
            client,
            campaign_key(source),
            _tracking(held, request.privacy_signal),
            held,
            source.landing_url,
            now,
            1,
            ad_ids=request.ad_ids,
        )
        self._remember(session_id, cached)
        return self._visit(session_id, cached)

    async def _is_stored(self, session_id: str) -> bool:
        """Whether the session's row is in the database (False when it cannot be asked)."""
        try:
            async with self._reader.connect() as conn:
                found = await conn.scalar(select(sessions.c.id).where(sessions.c.id == session_id))
        except Exception as error:
            if not is_transient(error):
                raise
            return False
        return found is not None

    async def _fill_ad_ids(self, session_id: str, ids: AdClientIds) -> None:
        """Store the ad platforms' ids a later page of the session brings and its row lacks."""
        cached = self._cache.get(session_id)
        new = ids.missing_from(cached.ad_ids) if cached else {}
        if cached is None or not new:
            return
        merged = AdClientIds(**{**cached.ad_ids.columns(), **new})
        params = {"sid": session_id, **merged.columns()}
        await self.transactions.run(lambda tx: tx.run(_FILL_AD_IDS, params))
        cached.ad_ids = merged

    async def ping(
        self,
        session_id: str,
        visitor_id: str,
        url: str | None,
        *,
        allowed_sites: Collection[str] | None = None,
    ) -> Visit | None:
        """Activity in a session: extend its leases. None: no such live session of this visitor."""
        return await self._activity(session_id, visitor_id, url, allowed_sites)

    async def _activity(
        self,
        session_id: str,
        visitor_id: str,
        url: str | None,
        allowed_sites: Collection[str] | None,
        arrival: TrafficSource | None = None,
        privacy: bool = False,
    ) -> Visit | None:
        """The session's activity, or None when the activity does not continue it. `privacy`:
        the page asks not to be tracked (DNT, GPC), and only a session begun so continues."""
        now = self._clock()
        cached = self._cache.get(session_id)
        if cached is None:
            cached = await self._load(session_id)
        else:
            self._cache.move_to_end(session_id)
        if (
            cached is None
            or cached.visitor_id != visitor_id
            or (allowed_sites is not None and cached.site not in allowed_sites)
            or not self._rule.continues(cached.last_seen, now, cached.campaign, arrival)
            # a visitor who turned the signal on mid-session: a new session without numbers,
            # not more page views (and a kept number) of the tracked one
            or (privacy and cached.tracking is not Tracking.PRIVACY)
        ):
            return None
        if url is not None and (url := url[:MAX_URL]) != cached.last_url:
            cached.last_url = url  # as kept: the cache holds no more of it than the database
            self._writes.viewed(session_id, now, url, keep=self._keeps_view(cached))
        cached.last_seen = now
        if self._writes.seen(session_id, now, cached.seen_written):
            cached.seen_written = now
        held_until = self._policy.held_until(now)
        if self._due(cached, now, held_until):
            if cached.renewing is None:
                cached.renewing = asyncio.Lock()
            # one renewal of a session at a time: two tabs pinging an exhausted session at
            # once must not take two numbers for it
            async with cached.renewing:
                if due := self._due(cached, now, held_until):
                    await self._renew(session_id, cached, due, now, held_until)
                    if any(h.tracking in REFUSED for h in cached.held):
                        cached.retry_at = now + self._retry_pace
        return self._visit(session_id, cached)

    def _keeps_view(self, cached: _CachedSession) -> bool:
        """Whether a new page view of the session is kept: under the session's
        `max_page_views`, and under the hourly budget of the network the session started from
        (one client's sessions, each under max_page_views, could otherwise keep 3,000 × 200 an
        hour). The session's network, known since it started: a ping costs no address
        parsing, and a client cannot spread its sessions' views over other addresses."""
        if cached.pages_kept >= self._settings.visits.max_page_views:
            self._view_not_kept(SESSION_LIMIT)
            return False
        if self._writes.views_backlog_full():
            self._view_not_kept(BACKLOG)
            return False
        if self._kept_views.take(cached.client or ""):
            self._view_not_kept(NETWORK_BUDGET)
            return False
        cached.pages_kept += 1
        return True

    def _due(self, cached: _CachedSession, now: float, held_until: float) -> list[HeldNumber]:
        """Extend what may be written behind; return what needs the database now: leases near
        their end, and pools that gave no number yet."""
        due = []
        for held in cached.held:
            if held.tracking is Tracking.TRACKED and held.lease_id and held.number:
                if self._may_write_behind(held, now):
                    self._writes.extend(held, now, held_until)
                else:
                    due.append(held)
            elif held.tracking in REFUSED and now >= cached.retry_at:
                due.append(held)
        return due

    async def _renew(
        self,
        session_id: str,
        cached: _CachedSession,
        to_renew: Sequence[HeldNumber],
        now: float,
        held_until: float,
    ) -> None:
        """Extend leases near expiry in the database, or lease again those that ran out or
        never got a number, under the same rules as a new visit (the per-client cap too)."""
        site, client = cached.site, cached.client

        def work(tx: Tx) -> list[tuple[HeldNumber, Claim | None]]:
            self._claims.lock_client(tx, client)  # before any extension locks a number's row
            results: list[tuple[HeldNumber, Claim | None]] = []
            for held in to_renew:
                if (
                    held.lease_id
                    and held.number
                    and self._claims.extend(tx, held.lease_id, held.number, now, held_until)
                ):
                    results.append((held, None))
                    continue
                # no number, or the lease ran out and the number may be someone else's: take one
                claim = self._claims.take(tx, session_id, site, held.pool, client, held.number, now)
                self._claims.record(tx, session_id, claim, now)
                if claim.tracking is not held.tracking:
                    params = {"sid": session_id, "p": held.pool, "t": str(claim.tracking)}
                    tx.run(_SET_POOL_TRACKING, {**params, "r": _refusal(claim.tracking)})
                    if held is cached.held[0]:
                        tx.run(_SET_TRACKING, params)
                results.append((held, claim))
            return results

        for held, claim in await self.transactions.run(work):
            if claim is None:
                held.confirmed_until = held_until
            else:
                claim.apply(held)
        if cached.held:
            cached.tracking = cached.held[0].tracking
        self._show(cached)

    def _may_write_behind(self, held: HeldNumber, now: float) -> bool:
        flusher_healthy = now - self._writes.last_ok < self._policy.sync_margin / 2
        return flusher_healthy and self._policy.may_extend_unconfirmed(held.confirmed_until, now)

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

    async def _load(self, session_id: str) -> _CachedSession | None:
        """A session this process has not cached (started before a restart, or elsewhere)."""
        if not is_id(session_id):
            return None
        async with self._reader.connect() as conn:
            rows = (await conn.execute(_LOAD, {"sid": session_id})).all()
        if (loaded := self._cache.get(session_id)) is not None:
            # another request for it read it meanwhile: one copy, with the one lock that keeps
            # two renewals of a session from taking two numbers in a pool
            return loaded
        if not rows:
            return None
        row = rows[0]
        plan = self._plans.get(row.site)
        pools: dict[str, Any] = {}  # pool -> its newest lease's row (or its only row)
        for r in rows:
            if r.pool is not None and (r.lease_id is not None or r.pool not in pools):
                pools[r.pool] = r
        held = []
        for pool, p in pools.items():
            replaces = tuple(p.replaces.split(",")) if p.replaces else ()
            if not replaces and plan is not None:  # from before pools named their own numbers
                replaces = next((x.replaces for x in plan.pools if x.name == pool), ())
            held.append(
                HeldNumber(
                    pool,
                    replaces,
                    Tracking(p.pool_tracking),
                    p.number,
                    p.lease_id,
                    p.held_until if p.lease_id is not None else 0.0,
                )
            )
        # in the order the visit leased them (SitePlan.slots: that of the site's own numbers),
        # the session's first pool first whatever the config says now: its outcome is the
        # session's tracking
        own = list(plan.own) if plan is not None else []

        def leased_order(h: HeldNumber) -> tuple[bool, int, str]:
            first_own = min((own.index(n) for n in h.replaces if n in own), default=len(own))
            return h.pool != row.first_pool, first_own, h.pool

        held.sort(key=leased_order)
        source = TrafficSource(
            row.source, row.medium, row.campaign, click_ids=json.loads(row.click_ids)
        )
        cached = _CachedSession(
            row.visitor_id,
            row.site,
            client_network(row.client_ip) if row.client_ip else None,
            campaign_key(source),
            Tracking(row.tracking),
            held,
            row.last_url,
            row.last_seen,
            row.pages_kept or 0,
            ad_ids=AdClientIds(row.ga_client_id, row.ym_client_id),
        )
        self._remember(session_id, cached)
        return cached

    def _remember(self, session_id: str, cached: _CachedSession) -> None:
        self._show(cached)
        self._cache[session_id] = cached
        self._cache.move_to_end(session_id)
        self._forget_idle(self._clock(), keep=session_id)

    def _forget_idle(self, now: float, keep: str) -> None:
        """Drop the sessions idle for CACHE_IDLE_PINGS ping intervals, and the least recently
        active beyond CACHE_LIMIT. One being renewed stays: its lock keeps two renewals of a
        session from taking two numbers, and a copy read back would have its own."""
        cache = self._cache
        while cache:
            session_id, oldest = next(iter(cache.items()))
            if session_id == keep:  # read back from the database just now: in use
                return
            idle = now - oldest.last_seen > self._cache_idle or len(cache) > CACHE_LIMIT
            if not idle or (oldest.renewing is not None and oldest.renewing.locked()):
                return
            del cache[session_id]

    def _show(self, cached: _CachedSession) -> None:
        """Work out the numbers the session sees, after what it holds changed."""
        plan = self._plans.get(cached.site)
        outcomes = [SlotOutcome(h.pool, h.replaces, h.tracking, h.number) for h in cached.held]
        cached.shown = plan.shown(outcomes) if plan else {}
        cached.memo = AnswerMemo()

    @staticmethod
    def _visit(session_id: str, cached: _CachedSession) -> Visit:
        return Visit(
            cached.visitor_id, session_id, cached.site, cached.shown, cached.tracking, cached.memo
        )

    # -- write-behind and reading back ------------------------------------------------------

    async def run_flusher(self) -> None:
        await self._writes.run()

    async def flush(self) -> None:
        await self._writes.flush()

    async def flush_if_possible(self) -> None:
        """Land the pending writes if the database takes them now; else leave them pending
        (retried by the flusher). For reads that may lag the last moments: pending writes only
        lengthen leases and count pages, so what the database has is nearly current."""
        try:
            await self.flush()
        except Exception as error:
            if not is_transient(error):
                raise

    async def holder_at(self, number: str, at: float) -> Holder | None:
        """The session that held `number` at instant `at` (CallStore.owner asks the database
        the same way, on the engine it stores the call with)."""
        await self.flush()
        return await lease_history.find_holder(self._engine, number, at)

    async def current_leases(self) -> Sequence[dict[str, Any]]:
        """Numbers held now, with the session holding each (for staff and `calltrack pools`)."""
        await self.flush_if_possible()
        return await lease_history.current_leases(self._engine, self._policy, self._clock())

    async def page_views(
        self, session_id: str, before: float | None = None, limit: int = 200
    ) -> Sequence[dict[str, Any]]:
        """The pages a session viewed, in order; with `before`, those before a call started."""
        await self.flush_if_possible()
        return await lease_history.session_page_views(self._engine, session_id, before, limit)


def _refusal(tracking: Tracking) -> str | None:
    """session_pools.refused of an outcome: itself if the pool refused the session a number."""
    return str(tracking) if tracking in REFUSED else None


def _held(slot: Slot, claim: Claim) -> HeldNumber:
    held = HeldNumber(slot.pool, slot.replaces, claim.tracking)
    claim.apply(held)
    return held


def _tracking(held: Sequence[HeldNumber], privacy: bool) -> Tracking:
    """A session's tracking in one word: its first pool's outcome, or why it has no pool."""
    if privacy:
        return Tracking.PRIVACY
    return held[0].tracking if held else Tracking.NO_POOL
