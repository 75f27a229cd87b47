"""Taking and extending a number: the conditional UPDATEs that make a lease exclusive.

Taking a number is a conditional UPDATE of its row in `numbers` ("set my lease where the number
is free"), which PostgreSQL and SQLite both serialise, so several daemons on one PostgreSQL never
hand one number to two sessions.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.leasing import LeasePolicy, Tracking
from pbx.settings import Settings
from pbx.storage.db import Tx, conflict_insert
from pbx.storage.tables import leases, numbers


def new_id() -> str:
    """A session, visitor or lease id: the millisecond it was made, then 80 random bits.

    80 random bits cannot be guessed or enumerated. The time in front keeps the ids in the order
    they were made, so the indexes on them (each table's key, leases and page views by session)
    grow at their right edge: the rows of one moment's visits share a few index pages, which the
    group commit writes once, where random ids put each on a random page of indexes that outgrow
    the cache with the months (ids made before this are random; both are 32 hex digits)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


@dataclass
class HeldNumber:
    """One pool a session leases from, and what it holds from it (cached between requests)."""

    pool: str
    replaces: tuple[str, ...]  # the site's own numbers this pool's number stands in for
    tracking: Tracking
    number: str | None = None
    lease_id: str | None = None
    confirmed_until: float = 0.0  # held_until as last written to the database


@dataclass(frozen=True)
class Claim:
    """What taking a number came to, made in a transaction and applied to the cache after it
    (on SQLite the transaction may run in another thread, where the cache is not touched)."""

    tracking: Tracking
    number: str | None = None
    lease_id: str | None = None
    held_until: float = 0.0

    def apply(self, held: HeldNumber) -> None:
        held.tracking, held.number, held.lease_id, held.confirmed_until = (
            self.tracking,
            self.number,
            self.lease_id,
            self.held_until,
        )


EXHAUSTED = Claim(Tracking.EXHAUSTED)

# The statements of the hot paths, built once: SQLAlchemy then finds them in its compiled cache
# without generating a cache key per call, which costs more than SQLite runs them in.
_INSERT_LEASE = insert(leases)
#: the numbers a client holds, in all and in one pool (one read of its index entries)
_HELD_BY_IP = (
    select(
        func.count().label("held"),
        func.coalesce(
            func.sum(
                case(
                    (
                        and_(
                            numbers.c.site == bindparam("site"),
                            numbers.c.pool == bindparam("pool"),
                        ),
                        1,
                    ),
                    else_=0,
                )
            ),
            0,
        ).label("in_pool"),
    )
    .select_from(numbers)
    .where(numbers.c.client_ip == bindparam("ip"), numbers.c.held_until >= bindparam("now"))
)
#: PostgreSQL: one client's leases are counted and taken one transaction at a time (two-key
#: advisory lock, this class and the client's hash; a key space apart from the AMI lock's one
#: bigint): at READ COMMITTED, parallel new visits of one client each counted fewer than the
#: cap, and together went past it by up to the connection pool's size
_CLIENT_LOCK_CLASS = int.from_bytes(b"ctIP", "big")
_LOCK_CLIENT = select(
    func.pg_advisory_xact_lock(_CLIENT_LOCK_CLASS, func.hashtext(bindparam("ip", type_=String)))
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
#: take a number that has never been leased (see NumberClaims._unused)
_TAKE_UNUSED = (
    update(numbers)
    .where(numbers.c.number == bindparam("n"), numbers.c.held_until.is_(None))
    .values(**_SET_LEASE)
)
_UNUSED = select(numbers.c.number).where(
    numbers.c.site == bindparam("site"),
    numbers.c.pool == bindparam("pool"),
    numbers.c.held_until.is_(None),
)


def _longest_free(site: str, pool: str) -> Select[tuple[str]]:
    """The SQL of the allocation rule defined in attribution/allocation.py (LongestFree): free
    the longest first, never leased, then the earliest expired; then by number. `site` and
    `pool` name the bind parameters (an UPDATE reserves its columns' names for its SET)."""
    return (
        select(numbers.c.number)
        .where(
            numbers.c.site == bindparam(site),
            numbers.c.pool == bindparam(pool),
            or_(numbers.c.held_until.is_(None), numbers.c.held_until < bindparam("now")),
        )
        .order_by(numbers.c.held_until.asc().nulls_first(), numbers.c.number)
        .limit(1)
    )


_LONGEST_FREE = _longest_free("site", "pool")
#: PostgreSQL: take the longest-free number in one statement (one round trip, where choosing
#: then taking was two). SKIP LOCKED lets concurrent takers pass each other: each locks the
#: row it chose, and a row another transaction holds is not waited for but skipped.
_TAKE_LONGEST_FREE = (
    update(numbers)
    .where(
        numbers.c.number
        == _longest_free("of_site", "of_pool").with_for_update(skip_locked=True).scalar_subquery()
    )
    .values(**_SET_LEASE)
    .returning(numbers.c.number)
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


class NumberClaims:
    def __init__(self, settings: Settings, policy: LeasePolicy, postgres: bool) -> None:
        self._settings = settings
        self._policy = policy
        self._postgres = postgres
        #: SQLite only: per (site, pool), the numbers never leased when last read, largest
        #: first. Ordering a pool by "free the longest, then by number" makes SQLite sort every
        #: never-leased row of it per lease (milliseconds for a pool of thousands), so the
        #: smallest never-leased number is taken from here instead; see _unused_or_longest_free.
        self._unused: dict[tuple[str, str], list[str]] = {}
        self._pool_sizes = {
            (site.name, pool.name): len(pool.numbers)
            for site in settings.sites
            for pool in site.pools
        }

    async def sync_numbers(self, engine: AsyncEngine) -> None:
        """Make the `numbers` rows match the config; a removed number keeps its history."""
        self._unused.clear()
        wanted = {
            number: (site.name, pool.name)
            for site in self._settings.sites
            for pool in site.pools
            for number in pool.numbers
        }
        async with engine.begin() as conn:
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
                # another daemon on the same PostgreSQL may be starting too: its rows are the same
                statement = conflict_insert(numbers, postgres=self._postgres)
                await conn.execute(statement.on_conflict_do_nothing(), new)
            if self._postgres and (gone or moved or new):
                # fresh statistics before the first lease: planned on a table it has not analysed
                # yet, taking a number sorted the whole pool by another index (2026-12-01: 20 ms
                # a lease at 15,850 numbers a pool, until autovacuum came round to it)
                await conn.execute(text("ANALYZE numbers"))

    def lock_client(self, tx: Tx, client: str | None) -> None:
        """PostgreSQL: hold `client`'s lock for the rest of the transaction, so that its lease
        count and takes follow another transaction's of the same client (_CLIENT_LOCK_CLASS).
        First in the transaction, before any lease is extended: an extension locks a number's
        row, and a transaction that held that row while it waited for this lock could wait on
        one that held this lock while it waited for that row (a deadlock)."""
        if self._postgres and client is not None:
            tx.scalar(_LOCK_CLIENT, {"ip": client})

    def take(
        self,
        tx: Tx,
        session_id: str,
        site: str,
        pool: str,
        client: str | None,
        preferred: str | None,
        now: float,
    ) -> Claim:
        """Lease a free number of the pool to the session (`preferred` first), or say why not.

        The caller writes the lease's history row with `record`, once the session's row exists,
        and on PostgreSQL has taken `lock_client` first in the transaction.
        """
        # `client` is the session's network (attribution.clients: an IPv6 /64 counts once); the
        # numbers it holds are counted by it (numbers.client_ip)
        if client is not None:
            where = {"ip": client, "now": now, "site": site, "pool": pool}
            held = tx.first(_HELD_BY_IP, where)
            assert held is not None  # an aggregate's one row
            size = self._pool_sizes.get((site, pool), 0)
            if not self._policy.may_take(client, held["held"], held["in_pool"], size):
                return Claim(Tracking.IP_CAP)
        held_until = self._policy.held_until(now)
        lease_id = new_id()
        lease = {"lid": lease_id, "sid": session_id, "until": held_until, "ip": client}
        if preferred and tx.run(_TAKE_FREE, {**lease, "n": preferred, "now": now}) == 1:
            return Claim(Tracking.TRACKED, preferred, lease_id, held_until)
        if self._postgres:
            chosen = {**lease, "of_site": site, "of_pool": pool, "now": now}
            number = tx.scalar(_TAKE_LONGEST_FREE, chosen)
            return Claim(Tracking.TRACKED, number, lease_id, held_until) if number else EXHAUSTED
        for _attempt in range(8):
            number, unused = self._unused_or_longest_free(tx, site, pool, now)
            if number is None:
                break
            taken = tx.run(
                _TAKE_UNUSED if unused else _TAKE_FREE, {**lease, "n": number, "now": now}
            )
            if unused:
                self._used(site, pool, number, taken == 1)
            if taken == 1:
                return Claim(Tracking.TRACKED, number, lease_id, held_until)
        return EXHAUSTED

    @staticmethod
    def record(tx: Tx, session_id: str, claim: Claim, now: float) -> None:
        """Write a taken number's lease into the history (after the session's row exists)."""
        if claim.lease_id is not None:
            tx.run(
                _INSERT_LEASE,
                {
                    "id": claim.lease_id,
                    "number": claim.number,
                    "session_id": session_id,
                    "started_at": now,
                    "last_activity": now,
                    "held_until": claim.held_until,
                },
            )

    def _unused_or_longest_free(
        self, tx: Tx, site: str, pool: str, now: float
    ) -> tuple[str | None, bool]:
        """SQLite: the number to try to lease next, and whether it comes from the never-leased
        list.

        The never-leased numbers sort first ("free the longest"), smallest number first. They
        are read once per pool into `_unused` and handed out from there; the UPDATE then
        requires the row to be still never leased, and if it is not (another process took it)
        the list is read again (_used), so the order is kept. (PostgreSQL takes the number in
        one statement, _TAKE_LONGEST_FREE.)
        """
        unused = self._unused.get((site, pool))
        if unused is None:
            rows = tx.scalars(_UNUSED, {"site": site, "pool": pool})
            unused = self._unused[(site, pool)] = sorted(rows, reverse=True)
        if unused:
            return unused[-1], True
        return tx.scalar(_LONGEST_FREE, {"site": site, "pool": pool, "now": now}), False

    def _used(self, site: str, pool: str, number: str, taken: bool) -> None:
        """The never-leased `number` was tried: it is never-leased no more, whoever took it."""
        unused = self._unused.get((site, pool))
        if not taken:
            self._unused.pop((site, pool), None)  # another process leases from it: read again
        elif unused and unused[-1] == number:
            unused.pop()

    @staticmethod
    def extend(tx: Tx, lease_id: str, number: str, now: float, held_until: float) -> bool:
        """Extend a lease still held; False when it ran out (the number may be someone else's)."""
        params = {"lid": lease_id, "n": number, "now": now, "until": held_until}
        if tx.run(_EXTEND_NUMBER, params) != 1:
            return False
        tx.run(_EXTEND_LEASE, params)
        return True
