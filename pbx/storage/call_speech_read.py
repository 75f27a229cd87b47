"""What the speech worker stored about calls (call_speech, call_keywords), read for the staff
pages, the staff API and webhooks. Queries only: the worker (recordings/speech) writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.storage.tables import call_keywords, call_speech

log = logging.getLogger(__name__)

PHRASE_MAX = 128  # call_keywords.phrase: a longer filter can match nothing
PHRASES_LISTED = 200  # the log's keyword select: the phrases heard, not every call's text


@dataclass(frozen=True)
class Segment:
    """A stretch of the transcript: who spoke (when the recording keeps channels apart), when."""

    channel: str | None
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Speech:
    """One analysed call as the call page shows it."""

    engine: str
    analysed_at: float
    transcript: str | None
    segments: list[Segment]
    error: str | None


async def keywords_of(
    conn: AsyncConnection, call_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    """The phrases heard in each call, in the order they were said."""
    if not call_ids:
        return {}
    k = call_keywords.c
    rows = await conn.execute(
        select(k.call_id, k.phrase, k.tag, k.at_seconds, k.channel)
        .where(k.call_id.in_(call_ids))
        .order_by(k.call_id, k.at_seconds, k.id)
    )
    heard: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        heard.setdefault(row.call_id, []).append(
            {
                "phrase": row.phrase,
                "tag": row.tag,
                "at_seconds": row.at_seconds,
                "channel": row.channel,
            }
        )
    return heard


async def transcripts_of(conn: AsyncConnection, call_ids: Sequence[int]) -> dict[int, str]:
    """The plain transcripts of the calls that have one."""
    if not call_ids:
        return {}
    s = call_speech.c
    rows = await conn.execute(
        select(s.call_id, s.transcript).where(s.call_id.in_(call_ids), s.transcript.is_not(None))
    )
    return {row.call_id: row.transcript for row in rows}


async def speech_of(engine: AsyncEngine, call_id: int) -> Speech | None:
    """The call's analysis, or None when the worker has not analysed it."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(call_speech).where(call_speech.c.call_id == call_id))
        ).one_or_none()
    if row is None:
        return None
    return Speech(
        engine=row.engine,
        analysed_at=row.analysed_at,
        transcript=row.transcript,
        segments=_segments(row.segments),
        error=row.error,
    )


def _segments(stored: str | None) -> list[Segment]:
    """call_speech.segments as the worker wrote it (a JSON list), in time order; a row that is
    not that shape (a bug, or an edit by hand) shows no segments, never a broken call page."""
    if not stored:
        return []
    try:
        parts = [
            Segment(
                channel=None if part.get("channel") is None else str(part["channel"]),
                start=float(part["start"]),
                end=float(part["end"]),
                text=str(part["text"]),
            )
            for part in json.loads(stored)
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        log.warning("call_speech.segments is not a list of segments (%s); not shown", error)
        return []
    return sorted(parts, key=lambda part: part.start)


async def heard_phrases(engine: AsyncEngine, limit: int = PHRASES_LISTED) -> list[str]:
    """The distinct phrases heard in any call (read from ix_call_keywords_phrase_call_id), for
    the call log's keyword filter."""
    phrase = call_keywords.c.phrase
    async with engine.connect() as conn:
        return list(await conn.scalars(select(phrase).distinct().order_by(phrase).limit(limit)))
