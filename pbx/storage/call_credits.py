"""Call credits: the rows reports read, one per call and attribution model.

Written with the call, in its transaction, and rebuilt idempotently from the raw rows (calls,
sessions, call_candidates) by `calltrack reports rebuild`, e.g. after ui.timezone changed. Both
paths go through `CallCredits.write`, so a rebuild gives what was written live, except where the
raw rows have changed since: a visitor's visits past visits.keep_days are gone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.models import NOBODY, CallHistory, Credit, CreditKind, Touch, credits
from attribution.numbering import StaticSource
from attribution.owner import Attribution
from attribution.reports import day_at
from attribution.traffic import host_of, path_of
from pbx.settings import Settings
from pbx.storage.callers import is_known_number
from pbx.storage.db import Tx, run_in
from pbx.storage.report_months import bump, bump_in
from pbx.storage.tables import (
    SESSION_TRAFFIC,
    call_candidates,
    call_credits,
    call_tags,
    calls,
    sessions,
)

MAX_HISTORY = 500  # the visitor's visits a call's credits consider (the latest ones)
REBUILD_BATCH = 1000

_TOUCH_COLUMNS = (sessions.c.id, *SESSION_TRAFFIC)


def _touch(row: Any) -> Touch:
    return Touch(
        session_id=row.id,
        started_at=row.started_at,
        site=row.site,
        source=row.source,
        medium=row.medium,
        campaign=row.campaign,
        term=row.term,
        content=row.content,
        landing=path_of(row.landing_url),
        referrer=host_of(row.referrer) if row.referrer else None,
    )


_DELETE_CREDITS = delete(call_credits).where(call_credits.c.call_id == bindparam("credited_call"))
_INSERT_CREDITS = insert(call_credits)


class CallCredits:
    def __init__(self, settings: Settings) -> None:
        self._zone = ZoneInfo(settings.ui.timezone)
        self._internal = frozenset(
            host for site in settings.sites for o in site.origins if (host := host_of(o))
        )

    def day(self, at: float) -> int:
        return day_at(at, self._zone)

    async def write(self, conn: AsyncConnection, call: Mapping[str, Any]) -> None:
        """(Re)write the credits of one stored call; `call` holds its columns (with `id`)."""
        rows = await self._rows(conn, call, await run_in(conn, lambda tx: facts_in(tx, call["id"])))
        await conn.execute(_DELETE_CREDITS, {"credited_call": call["id"]})
        await conn.execute(_INSERT_CREDITS, rows)
        await bump(conn, {row["day"] // 100 for row in rows})  # a late call changes its month

    async def _rows(
        self, conn: AsyncConnection, call: Mapping[str, Any], facts: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The call's credit rows, one per model, with its figures `facts`."""
        visits = await _visits(conn, call["visitor_id"], call["started_at"])
        matched = await _matched(conn, call, visits)
        if matched.kind is CreditKind.PROBABLE and not visits and matched.touch:
            visits = await _visits_of_session(conn, matched.touch.session_id, call["started_at"])
        history = CallHistory(call["started_at"], matched, visits)
        day = self.day(call["started_at"])
        return [
            _row(call["id"], str(model), day, credit, call) | facts
            for model, credit in credits(history, self._internal).items()
        ]

    async def rebuild(self, engine: AsyncEngine) -> int:
        """Write every call's credits again; returns how many calls.

        The same rows as `write`, but a batch of calls at a time: the figures come from the call
        rows already read and the batch's tags in one query, and the batch's credits are deleted
        and inserted by one statement each. A statement per call costs more than its work (five
        per call took 2 ms a call: 100,000 calls in minutes)."""
        done, after = 0, -1
        while True:
            async with engine.begin() as conn:
                rows = (
                    await conn.execute(
                        select(calls)
                        .where(calls.c.id > after)
                        .order_by(calls.c.id)
                        .limit(REBUILD_BATCH)
                        # PostgreSQL: a review or sale of these calls meanwhile waits for the
                        # batch, then refreshes the rows it wrote (SQLite: one writer anyway)
                        .with_for_update()
                    )
                ).all()
                if not rows:
                    return done
                last = rows[-1].id
                tags: dict[int, list[str]] = defaultdict(list)
                for call_id, tag in await conn.execute(
                    select(call_tags.c.call_id, call_tags.c.tag).where(
                        call_tags.c.call_id > after, call_tags.c.call_id <= last
                    )
                ):
                    tags[call_id].append(tag)
                written: list[dict[str, Any]] = []
                for row in rows:
                    call = dict(row._mapping)
                    written += await self._rows(conn, call, figures_of(call, tags[row.id]))
                k = call_credits.c
                await conn.execute(delete(call_credits).where(k.call_id > after, k.call_id <= last))
                await conn.execute(insert(call_credits), written)
            done += len(rows)
            after = last


#: what a call's figures are made of (see figures_of)
_FIGURES_OF_CALL = select(
    calls.c.status,
    calls.c.caller,
    calls.c.repeat_caller,
    calls.c.talk_seconds,
    calls.c.score,
    calls.c.sale_cents,
    calls.c.crm_sales,
    calls.c.crm_sale_cents,
).where(calls.c.id == bindparam("call_id"))
TAGS_OF_CALL = select(call_tags.c.tag).where(call_tags.c.call_id == bindparam("call_id"))
#: the keys of figures_of, each a call_credits column of that name
FIGURES = (
    "status", "first_time", "repeat_call", "talk_seconds", "score", "tags", "sale_cents",
    "crm_sales", "crm_sale_cents",
)  # fmt: skip
_UPDATE_FIGURES = (
    update(call_credits)
    .where(call_credits.c.call_id == bindparam("credited_call"))
    .values({name: bindparam("new_" + name) for name in FIGURES})
)
_CREDITED_DAYS = select(call_credits.c.day).where(call_credits.c.call_id == bindparam("call_id"))


def refresh_facts_in(tx: Tx, call_id: int) -> None:
    """Copy a call's figures (status, talk, score, tags, sales) to its credits again, in the
    transaction that changed them: reports read them there."""
    figures = facts_in(tx, call_id)
    tx.run(_UPDATE_FIGURES, {"credited_call": call_id, **{"new_" + k: figures[k] for k in FIGURES}})
    bump_in(tx, {day // 100 for day in tx.scalars(_CREDITED_DAYS, {"call_id": call_id})})


async def refresh_facts(conn: AsyncConnection, call_id: int) -> None:
    """refresh_facts_in, in the async transaction `conn`."""
    await run_in(conn, lambda tx: refresh_facts_in(tx, call_id))


def facts_in(tx: Tx, call_id: int) -> dict[str, Any]:
    """The stored call's figures as its credits carry them (see figures_of)."""
    row = tx.first(_FIGURES_OF_CALL, {"call_id": call_id})
    if row is None:
        raise LookupError(f"call {call_id} is not stored")
    return figures_of(row, tx.scalars(TAGS_OF_CALL, {"call_id": call_id}))


def figures_of(call: Mapping[str, Any], tags: Iterable[str]) -> dict[str, Any]:
    """The call's figures as its credits carry them, from its row and its tags."""
    return {
        "status": call["status"],
        # an anonymous caller may have called before: not counted as a first-time caller
        "first_time": is_known_number(call["caller"]) and not call["repeat_caller"],
        "repeat_call": bool(call["repeat_caller"]),  # a known number's only (CallStore)
        "talk_seconds": call["talk_seconds"],
        "score": call["score"],
        "tags": tag_list(tags),
        "sale_cents": call["sale_cents"] or 0,
        "crm_sales": call["crm_sales"],
        "crm_sale_cents": call["crm_sale_cents"],
    }


def tag_list(tags: Iterable[str]) -> str:
    """Tags as one text that `LIKE '%,lead,%'` searches: ",lead,sale," ("" for none)."""
    ordered = sorted(tags)
    return f",{','.join(ordered)}," if ordered else ""


_VISITORS_SESSIONS = select(*_TOUCH_COLUMNS).where(
    sessions.c.visitor_id == bindparam("visitor_id"), sessions.c.started_at <= bindparam("until")
)
# built once: every stored call reads its visitor's history
_LATEST_VISITS = _VISITORS_SESSIONS.order_by(sessions.c.started_at.desc()).limit(MAX_HISTORY)
_FIRST_VISIT = _VISITORS_SESSIONS.order_by(sessions.c.started_at).limit(1)


async def _visits(conn: AsyncConnection, visitor_id: str | None, until: float) -> list[Touch]:
    if visitor_id is None:
        return []
    mine = {"visitor_id": visitor_id, "until": until}
    visits = [_touch(r) for r in await conn.execute(_LATEST_VISITS, mine)]
    if len(visits) == MAX_HISTORY:  # capped: the first visit (the first touch) is read apart
        visits += [_touch(r) for r in await conn.execute(_FIRST_VISIT, mine)]
    return visits


async def _visits_of_session(conn: AsyncConnection, session_id: str, until: float) -> list[Touch]:
    visitor = await conn.scalar(select(sessions.c.visitor_id).where(sessions.c.id == session_id))
    return await _visits(conn, visitor, until)


async def _matched(
    conn: AsyncConnection, call: Mapping[str, Any], visits: Sequence[Touch]
) -> Credit:
    """What the call was matched to when stored, read back from its columns."""
    attribution = call["attribution"]
    if attribution == Attribution.STATIC:
        return Credit(
            CreditKind.STATIC,
            static=StaticSource(call["source"], call["medium"], call["campaign"]),
        )
    if attribution == Attribution.SESSION and call["session_id"]:
        own = next((t for t in visits if t.session_id == call["session_id"]), None)
        if own is None:  # its visitor's history is capped: read the session itself
            row = (
                await conn.execute(
                    select(*_TOUCH_COLUMNS).where(sessions.c.id == call["session_id"])
                )
            ).one_or_none()
            own = _touch(row) if row else None
        return Credit(CreditKind.SESSION, own) if own else NOBODY
    if attribution == Attribution.PROBABLE:
        row = (
            await conn.execute(
                select(*_TOUCH_COLUMNS)
                .join(call_candidates, call_candidates.c.session_id == sessions.c.id)
                .where(call_candidates.c.call_id == call["id"])
                .order_by(call_candidates.c.likelihood.desc(), call_candidates.c.released_at.desc())
                .limit(1)
            )
        ).one_or_none()
        return Credit(CreditKind.PROBABLE, _touch(row)) if row else NOBODY
    return NOBODY


def _row(
    call_id: int, model: str, day: int, credit: Credit, call: Mapping[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "call_id": call_id,
        "model": model,
        "day": day,
        "kind": str(credit.kind),
        # the number's: a static or unattributed call is still its site's (site filters); the
        # pool is always the dialled number's, as the call log says, whichever visit is credited
        "site": call.get("site"),
        "pool": call.get("pool"),
        "source": None,
        "medium": None,
        "campaign": None,
        "term": None,
        "content": None,
        "landing": None,
        "referrer": None,
        "static": None,
        "session_id": None,
    }
    if credit.static is not None:
        s = credit.static
        row |= {"source": s.source, "medium": s.medium, "campaign": s.campaign, "static": s.source}
    elif credit.touch is not None:
        t = credit.touch
        row |= {
            "site": t.site,
            "source": t.source,
            "medium": t.medium,
            "campaign": t.campaign,
            "term": t.term,
            "content": t.content,
            "landing": t.landing[:1024],
            "referrer": t.referrer[:255] if t.referrer else None,
            "session_id": t.session_id,
        }
    return row
