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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations.delivery import Outgoing, PendingEvent
from integrations.events import Event
from pbx.storage.outbox import DELIVERED, FAILED, PENDING, SKIPPED
from pbx.storage.tables import outbox

ERROR_MAX = 512  # outbox.last_error's width
RECENT_MAX = 500


@dataclass(frozen=True)
class Claimed:
    """A row the worker now delivers: the event, and the request kept from an earlier try."""

    event: PendingEvent
    give_up_at: float
    sent: Outgoing | None  # None: the first attempt, compose it
    signed: bool  # the kept request is signed (with the target's secret of the moment)


def dump_outgoing(outgoing: Outgoing) -> str:
    """The request as kept in `outbox.body`: never its secret, which stays in the config."""
    try:
        body: dict[str, str] = {"body": outgoing.body.decode()}
    except UnicodeDecodeError:
        body = {"body_base64": base64.b64encode(outgoing.body).decode()}
    kept = {
        "url": outgoing.url,
        "headers": dict(outgoing.headers),
        **body,
        "signed": outgoing.secret is not None,
    }
    return json.dumps(kept, ensure_ascii=False)


def _load_outgoing(text: str) -> tuple[Outgoing, bool]:
    kept = json.loads(text)
    body = kept["body"].encode() if "body" in kept else base64.b64decode(kept["body_base64"])
    return Outgoing(kept["url"], body, kept["headers"]), bool(kept["signed"])


class Deliveries:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    async def claim(self, limit: int, lease: float) -> list[Claimed]:
        """Up to `limit` due rows, oldest due first, now leased for `lease` seconds."""
        now = self._clock()
        due = (
            select(outbox)
            .where(
                outbox.c.state == PENDING,
                outbox.c.due_at <= now,
                or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            )
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
        return [_claimed(row) for row in rows]

    async def keep(self, outbox_id: int, outgoing: Outgoing) -> None:
        """Keep the first attempt's request, so every retry sends the same bytes."""
        await self._write(outbox_id, body=dump_outgoing(outgoing))

    async def delivered(self, outbox_id: int, at: float, status: int) -> None:
        await self._attempted(outbox_id, at, status, None, state=DELIVERED, delivered_at=at)

    async def retry(
        self, outbox_id: int, at: float, status: int | None, error: str, due_at: float
    ) -> None:
        await self._attempted(outbox_id, at, status, error, due_at=due_at)

    async def failed(self, outbox_id: int, at: float, status: int | None, error: str) -> None:
        """The last attempt failed at the give-up time: nobody will try again by itself."""
        await self._attempted(outbox_id, at, status, error, state=FAILED)

    async def skipped(self, outbox_id: int, reason: str) -> None:
        """Nothing to send (the composer said why): not an attempt."""
        await self._write(
            outbox_id, state=SKIPPED, last_error=reason[:ERROR_MAX], claimed_until=None
        )

    async def retry_now(self, outbox_id: int) -> bool:
        """Make a pending or failed row due now; a failed one gets its retry window again
        (as long as it first had). False: no such row, or it was delivered or skipped. A row
        being delivered right now keeps its lease, so it is not sent twice at once."""
        now = self._clock()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.id == outbox_id, outbox.c.state.in_([PENDING, FAILED]))
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
        self, outbox_id: int, at: float, status: int | None, error: str | None, **values: Any
    ) -> None:
        await self._write(
            outbox_id,
            attempts=outbox.c.attempts + 1,
            last_attempt_at=at,
            last_status=status,
            last_error=None if error is None else error[:ERROR_MAX],
            claimed_until=None,
            **values,
        )

    async def _write(self, outbox_id: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == outbox_id, outbox.c.state == PENDING)
                .values(**values)
            )


def _claimed(row: Any) -> Claimed:
    sent, signed = _load_outgoing(row["body"]) if row["body"] else (None, False)
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
    return Claimed(event, row["give_up_at"], sent, signed)


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
