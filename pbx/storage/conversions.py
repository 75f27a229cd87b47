"""Reading calls for the ad platforms' upload files (integrations.google_ads, .metrica).

One query: the calls started in a range, with the session's Metrica ClientID and the call's
credit row (its tags, and whether the reports count it as a lead, by the same rule).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import CallStatus
from attribution.reports import Model
from integrations.conversions import ConversionCall
from pbx.settings import Settings
from pbx.storage.callers import is_known_number
from pbx.storage.report_queries import is_lead
from pbx.storage.tables import call_credits, calls, sessions

#: the most calls one export reads: a busy line's quarter; longer ranges are exported in parts
MAX_CALLS = 200_000


class TooManyCalls(Exception):
    """The range holds more than MAX_CALLS calls; nothing was exported."""


def _click_ids(text: str | None) -> Mapping[str, str]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _call(row: Any) -> ConversionCall:
    return ConversionCall(
        id=row.id,
        started_at=row.started_at,
        did=row.did,
        answered=row.status == CallStatus.ANSWERED,
        ring_seconds=row.ring_seconds,
        talk_seconds=row.talk_seconds,
        # as reports count it: an anonymous caller may have called before
        first_time=is_known_number(row.caller) and not row.repeat_caller,
        static=row.attribution == "static",
        lead=bool(row.lead),
        sale_cents=(row.sale_cents or 0) + row.crm_sale_cents,
        click_ids=_click_ids(row.click_ids),
        ym_client_id=row.ym_client_id,
        landing_url=row.landing_url,
        tags=tuple(t for t in (row.tags or "").split(",") if t),
    )


async def conversion_calls(
    engine: AsyncEngine, settings: Settings, start: float, end: float
) -> list[ConversionCall]:
    """The calls started in [start, end), oldest first."""
    c, k = calls.c, call_credits.c
    query = (
        select(
            c.id,
            c.started_at,
            c.did,
            c.caller,
            c.status,
            c.ring_seconds,
            c.talk_seconds,
            c.repeat_caller,
            c.attribution,
            c.click_ids,
            c.landing_url,
            c.sale_cents,
            c.crm_sale_cents,
            sessions.c.ym_client_id,
            k.tags,
            is_lead(settings).label("lead"),
        )
        .select_from(
            calls.outerjoin(sessions, sessions.c.id == c.session_id).outerjoin(
                call_credits, and_(k.call_id == c.id, k.model == str(Model.LAST))
            )
        )
        .where(c.started_at >= start, c.started_at < end)
        .order_by(c.started_at, c.id)
    )
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).where(c.started_at >= start, c.started_at < end)
        )
        if (count or 0) > MAX_CALLS:
            raise TooManyCalls(
                f"{count} calls in the range, more than {MAX_CALLS} in one file: export a shorter"
                " range"
            )
        rows = (await conn.execute(query)).all()
    # up to MAX_CALLS rows: seconds of CPU, in a thread so the event loop keeps its turns
    return await asyncio.to_thread(lambda: [_call(row) for row in rows])
