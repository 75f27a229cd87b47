"""Deals the CRM reports (`POST /api/v1/sales`): each credited to the caller's latest call, once.

A sale is keyed by the CRM's reference, so a retried post never counts twice. The credited
call's `crm_sales` / `crm_sale_cents` (what reports read) change in the same transaction as the
`sales` row, by difference, so concurrent posts for the same call add up on PostgreSQL too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.phone import dialled_forms
from attribution.sales import CallSeen, Unmatched, credited_call
from integrations.events import Event
from pbx.storage.call_credits import refresh_facts
from pbx.storage.outbox import Outbox
from pbx.storage.tables import calls, sales

ATTEMPTS = 3  # a race lost to an identical post is settled by reading its row on the next one


@dataclass(frozen=True)
class Sale:
    """A deal as the CRM reported it. `at` None: now for a new reference, unchanged for a known
    one (a retry without `at` is the same sale, not a sale moved to the retry's time)."""

    reference: str
    caller: str  # E.164
    amount_cents: int
    at: float | None


@dataclass(frozen=True)
class Credited:
    """The call a sale is credited to, as stored now."""

    call_id: int
    amount_cents: int
    at: float
    created: bool  # False: the reference was known (unchanged, or corrected)
    #: the calls whose sale figures this changed (a correction may move the sale to another
    #: call): none when a known sale came again unchanged
    changed: tuple[int, ...] = ()


@dataclass(frozen=True)
class Taken:
    """The reference is a sale another API token posted: references are each integration's own
    (two systems that both number deals 1, 2, 3 moved each other's sales to their calls)."""

    by: str


class SaleStore:
    def __init__(
        self,
        engine: AsyncEngine,
        region: str | None,
        match_days: int,
        clock: Callable[[], float],
        outbox: Outbox,
    ) -> None:
        self._engine = engine
        self._region = region
        self._match_days = match_days
        self._clock = clock
        self._outbox = outbox

    async def record(self, sale: Sale, by: str) -> Credited | Unmatched | Taken:
        """Store or correct the sale and credit it; why not when no call can have brought it
        (then nothing changes, also for a known reference: its earlier credit stands), or when
        the reference is another token's sale (nothing changes either)."""
        for _ in range(ATTEMPTS - 1):
            try:
                return await self._attempt(sale, by)
            except IntegrityError:  # the same reference was inserted meanwhile: now it is known
                continue
        return await self._attempt(sale, by)

    async def _attempt(self, sale: Sale, by: str) -> Credited | Unmatched | Taken:
        async with self._engine.begin() as conn:
            result = await self._record(conn, sale, by)
            queued = 0
            if isinstance(result, Credited) and result.created:
                queued = await self._outbox.add(
                    conn, Event.SALE_CREATED, result.call_id, sale.reference
                )
            elif isinstance(result, Credited):  # a correction: the calls it changed
                for call_id in result.changed:
                    queued += await self._outbox.add(conn, Event.CALL_UPDATED, call_id)
        if queued:
            self._outbox.wake()
        return result

    async def _record(
        self, conn: AsyncConnection, sale: Sale, by: str
    ) -> Credited | Unmatched | Taken:
        known = (
            await conn.execute(
                select(sales).where(sales.c.reference == sale.reference).with_for_update()
            )
        ).one_or_none()
        if known is not None and known.created_by != by:
            return Taken(known.created_by)
        if known is None:
            at = self._clock() if sale.at is None else sale.at
        else:
            at = known.at if sale.at is None else sale.at
            if (sale.caller, sale.amount_cents, at) == (known.caller, known.amount_cents, known.at):
                return Credited(known.call_id, known.amount_cents, known.at, created=False)
        if known is not None and (sale.caller, at) == (known.caller, known.at):
            call_id = known.call_id  # only the amount was corrected: the same call
        else:
            match = credited_call(
                await self._candidates(conn, sale.caller, at), at, self._match_days
            )
            if isinstance(match, Unmatched):
                return match
            call_id = match.call_id
        row = {"call_id": call_id, "caller": sale.caller, "amount_cents": sale.amount_cents}
        if known is None:
            await conn.execute(
                sales.insert().values(
                    reference=sale.reference, at=at, created_at=self._clock(), created_by=by, **row
                )
            )
        else:
            await conn.execute(
                update(sales).where(sales.c.reference == sale.reference).values(at=at, **row)
            )
        credits = [(call_id, 1, sale.amount_cents)]
        if known is not None:
            credits.append((known.call_id, -1, -known.amount_cents))
        for credit in sorted(credits):  # calls in id order: writers never wait in a circle
            await _credit(conn, *credit)
        changed = tuple(sorted({credit[0] for credit in credits}))
        return Credited(call_id, sale.amount_cents, at, created=known is None, changed=changed)

    async def _candidates(self, conn: AsyncConnection, caller: str, at: float) -> list[CallSeen]:
        """The caller's latest call at or before `at` and first call after it, in whichever form
        the PBX stored the number: the two calls that decide the match."""
        c = calls.c
        from_caller = select(c.id, c.started_at).where(
            c.caller.in_(dialled_forms(caller, self._region))
        )
        queries = (
            from_caller.where(c.started_at <= at).order_by(c.started_at.desc(), c.id.desc()),
            from_caller.where(c.started_at > at).order_by(c.started_at, c.id),
        )
        found = [(await conn.execute(query.limit(1))).one_or_none() for query in queries]
        return [CallSeen(row.id, row.started_at) for row in found if row is not None]


async def _credit(conn: AsyncConnection, call_id: int, count: int, cents: int) -> None:
    """Add to the call's CRM sales: by difference, so the database's row lock orders writers."""
    await conn.execute(
        update(calls)
        .where(calls.c.id == call_id)
        .values(
            crm_sales=calls.c.crm_sales + count,
            crm_sale_cents=calls.c.crm_sale_cents + cents,
        )
    )
    await refresh_facts(conn, call_id)
