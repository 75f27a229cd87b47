"""The outbox seen by the delivery worker: claim due rows, keep what is sent, record attempts.

A claim sets `claimed_until` (a lease) in one transaction with the SELECT that found the rows:
on PostgreSQL the SELECT locks them `FOR UPDATE SKIP LOCKED`, so two daemons polling at once
each take different rows and neither waits for the other; on SQLite the transaction is
`BEGIN IMMEDIATE` (pbx.storage.db), which serialises claims across processes. A worker that
dies mid-delivery leaves its lease to run out, and the row is claimed again. Every outcome is
written only to a row still pending, so an admin's "retry now" is never overwritten by a
late answer, and no outcome revives a row.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import case, delete, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations.delivery import PendingEvent
from integrations.events import Event
from pbx.storage.outbox import DELIVERED, FAILED, PENDING, SKIPPED
from pbx.storage.tables import outbox

ERROR_MAX = 512  # outbox.last_error's width
#: what a receiver's answer may hold that no text column may (PostgreSQL refuses a NUL) or that
#: would garble the admin's page: its error is kept without them
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def error_text(error: str) -> str:
    """An attempt's error as kept in the outbox: a receiver's own words can be any bytes (a
    binary error page); one the database refused would never be written, and the row would be
    sent again at every lease's end without its attempts counting."""
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", error)[:ERROR_MAX]


RECENT_MAX = 500


@dataclass(frozen=True)
class Kept:
    """What the first attempt sent, for every retry: the body and its headers. Never the URL
    (GA4's and Bitrix24's carry their keys) nor the secret: both come from the config."""

    body: bytes
    headers: Mapping[str, str]

    def dump(self) -> str:
        try:
            body: dict[str, str] = {"body": self.body.decode()}
        except UnicodeDecodeError:
            body = {"body_base64": base64.b64encode(self.body).decode()}
        return json.dumps({"headers": dict(self.headers), **body}, ensure_ascii=False)

    @classmethod
    def load(cls, text: str) -> Kept:
        kept = json.loads(text)
        body = kept["body"].encode() if "body" in kept else base64.b64decode(kept["body_base64"])
        return cls(body, kept["headers"])


@dataclass(frozen=True)
class Claimed:
    """A row the worker now delivers: the event, the request kept from an earlier try, and
    the claim's lease end, which the worker's writes name (a claim taken over after its lease
    ran out makes the late writer's outcome a no-op)."""

    event: PendingEvent
    give_up_at: float
    kept: Kept | None  # None: the first attempt, compose it
    lease: float
    last_attempt_at: float | None = None  # when the last attempt's outcome was written
    #: the lease of a claim that ran out before its outcome was written (a daemon stopped, the
    #: database away): that claim may have sent its request just before it ended
    lapsed_lease: float | None = None


class Deliveries:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    async def claim(
        self, limit: int, lease: float, targets: Collection[str], busy: Collection[str] = ()
    ) -> list[Claimed]:
        """Up to `limit` due rows of `targets` (but not of the `busy` ones, which have as many
        deliveries in flight as one target may), oldest due first, now leased for `lease`
        seconds. Nothing due: no write transaction (SQLite's is the one writer's lock)."""
        now = self._clock()
        wanted = [t for t in targets if t not in busy]
        if not wanted or limit <= 0:
            return []
        where = (
            outbox.c.state == PENDING,
            outbox.c.due_at <= now,
            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            outbox.c.target.in_(wanted),
        )
        async with self._engine.connect() as conn:
            if await conn.scalar(select(outbox.c.id).where(*where).limit(1)) is None:
                return []
        due = (
            select(outbox)
            .where(*where)
            .order_by(outbox.c.due_at, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's BEGIN IMMEDIATE instead
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(due)).mappings().all()
            if rows:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([row["id"] for row in rows]))
                    .values(claimed_until=now + lease)
                )
        return [_claimed(row, now + lease) for row in rows]

    async def release(self, row: Claimed) -> None:
        """Give a claimed row back untried (its target has its share of deliveries in
        flight): due as it was, claimable at once, with the lapsed lease it was claimed with
        (the next claim must still know an earlier request may have been sent then)."""
        await self._write(row, claimed_until=row.lapsed_lease)

    async def renew(self, row: Claimed, lease: float, kept: Kept | None = None) -> Claimed | None:
        """Extend this claim to `lease` just before sending, and keep the first attempt's
        request (`kept`: every retry sends the same bytes). None when the claim was lost: its
        lease ran out meanwhile (composing, a database or loop that stalled) and another worker
        or daemon may have claimed the row and be sending it, so this one must not."""
        values: dict[str, Any] = {"claimed_until": lease}
        if kept is not None:
            values["body"] = kept.dump()
        if not await self._write(row, **values):
            return None
        return replace(row, lease=lease, kept=kept or row.kept)

    async def delivered(
        self, row: Claimed, at: float, status: int | None, note: str | None = None
    ) -> None:
        """Delivered: by this attempt (the receiver's `status`), or, with a `note` saying so
        and no status, by an earlier one whose answer was lost (a lookup found its effect)."""
        await self._attempted(row, at, status, note, state=DELIVERED, delivered_at=at)

    async def postpone(self, row: Claimed, due_at: float) -> None:
        """Give the claimed row back untried, due at `due_at` (not an attempt), keeping the
        lapsed lease it was claimed with, as release does."""
        await self._write(row, due_at=due_at, claimed_until=row.lapsed_lease)

    async def retry(
        self, row: Claimed, at: float, status: int | None, error: str, due_at: float
    ) -> None:
        await self._attempted(row, at, status, error, due_at=due_at)

    async def failed(self, row: Claimed, at: float, status: int | None, error: str) -> None:
        """The last attempt failed at the give-up time: nobody will try again by itself."""
        await self._attempted(row, at, status, error, state=FAILED)

    async def skipped(self, row: Claimed, reason: str) -> None:
        """Nothing to send (the composer said why): not an attempt."""
        await self._write(row, state=SKIPPED, last_error=error_text(reason), claimed_until=None)

    async def retry_now(self, outbox_id: int, targets: Collection[str]) -> bool:
        """Make a pending or failed row due now; a failed one gets its retry window again
        (as long as it first had). False: no such row, it was delivered or skipped, or its
        target is not among `targets` (the config's: no worker would send it). A row being
        delivered right now keeps its lease, so it is not sent twice at once."""
        now = self._clock()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == outbox_id,
                    outbox.c.state.in_([PENDING, FAILED]),
                    outbox.c.target.in_(list(targets)),
                )
                .values(
                    state=PENDING,
                    due_at=now,
                    give_up_at=case(
                        (outbox.c.state == FAILED, now + outbox.c.give_up_at - outbox.c.created_at),
                        else_=outbox.c.give_up_at,
                    ),
                )
            )
        return result.rowcount > 0

    async def _attempted(
        self, row: Claimed, at: float, status: int | None, error: str | None, **values: Any
    ) -> None:
        await self._write(
            row,
            attempts=outbox.c.attempts + 1,
            last_attempt_at=at,
            last_status=status,
            last_error=None if error is None else error_text(error),
            claimed_until=None,
            **values,
        )

    async def _write(self, row: Claimed, **values: Any) -> bool:
        """Only to the row still pending and still under this claim; whether it was."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row.event.id,
                    outbox.c.state == PENDING,
                    outbox.c.claimed_until == row.lease,
                )
                .values(**values)
            )
            return bool(result.rowcount)


def _claimed(row: Any, lease: float) -> Claimed:
    event = PendingEvent(
        id=row["id"],
        event_id=row["event_id"],
        target=row["target"],
        event=Event(row["event"]),
        call_id=row["call_id"],
        sale_reference=row["sale_reference"],
        created_at=row["created_at"],
        attempts=row["attempts"],
    )
    kept = Kept.load(row["body"]) if row["body"] else None
    return Claimed(
        event, row["give_up_at"], kept, lease, row["last_attempt_at"], row["claimed_until"]
    )


async def forget_settled_before(engine: AsyncEngine, before: float, batch: int = 500) -> int:
    """Delete deliveries created before `before` that are settled (a pending one is kept,
    however old: it is still due); in small transactions. Returns how many.

    The DELETE says again what it deletes: on PostgreSQL another daemon's "Retry now" may make
    a failed row pending between the batch's SELECT and its DELETE, and the row then has to
    stay (the DELETE waits for that UPDATE's commit and checks the row again)."""
    forgettable = (outbox.c.state.in_([DELIVERED, FAILED, SKIPPED]), outbox.c.created_at < before)
    deleted = 0
    while True:
        async with engine.begin() as conn:
            ids = list(await conn.scalars(select(outbox.c.id).where(*forgettable).limit(batch)))
            if not ids:
                return deleted
            gone = await conn.execute(delete(outbox).where(outbox.c.id.in_(ids), *forgettable))
        deleted += gone.rowcount


#: a delivery to a target gone from the config waits this long past its window before it is
#: skipped: any daemon that still has the target has made its last attempt by then
TARGET_GONE_AFTER = 3600.0


async def skip_targets_gone(engine: AsyncEngine, targets: Collection[str], now: float) -> int:
    """Mark skipped the pending deliveries to targets no longer in the config, once
    TARGET_GONE_AFTER past their give_up_at and not claimed; how many. No worker claims them
    (each claims only its config's targets), and they stayed pending for ever. A daemon whose
    config still has the target (another's lags during a change) sends its last attempt at
    give_up_at, under a claim: neither is skipped."""
    gone = outbox.c.target.not_in(list(targets)) if targets else true()
    unclaimed = or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(outbox)
            .where(
                outbox.c.state == PENDING,
                outbox.c.give_up_at < now - TARGET_GONE_AFTER,
                unclaimed,
                gone,
            )
            .values(
                state=SKIPPED,
                claimed_until=None,
                last_error="its target is no longer in the config",
            )
        )
        return int(result.rowcount or 0)


async def recent(
    engine: AsyncEngine, limit: int, state: str | None = None
) -> Sequence[dict[str, Any]]:
    """The newest deliveries (at most RECENT_MAX), for the admin page: `next_try` is when a
    pending row is tried again (None once it is settled)."""
    query = (
        select(
            outbox.c.id,
            outbox.c.event_id,
            outbox.c.event,
            outbox.c.target,
            outbox.c.call_id,
            outbox.c.sale_reference,
            outbox.c.attempts,
            outbox.c.state,
            outbox.c.last_status,
            outbox.c.last_error,
            case((outbox.c.state == PENDING, outbox.c.due_at), else_=None).label("next_try"),
            outbox.c.give_up_at,
            outbox.c.claimed_until,  # a worker is sending it now
            outbox.c.created_at,
            outbox.c.last_attempt_at,
            outbox.c.delivered_at,
        )
        .order_by(outbox.c.id.desc())
        .limit(max(1, min(limit, RECENT_MAX)))
    )
    if state is not None:
        query = query.where(outbox.c.state == state)
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]
