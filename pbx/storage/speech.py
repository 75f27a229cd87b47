"""What the speech worker made of calls: queries only (recordings.speech_worker decides).

A call is analysed once: its call_speech row (a result or the error that stopped it) is the
mark, so a restart does not analyse it again and a corrupt file is not retried forever. Tags a
keyword adds are written with the result, marked automatic, and only when the call lacks them:
staff who removed one are not overruled, and the call is never analysed again to put it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict

from sqlalchemy import ColumnElement, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import AS_RECORDED
from attribution.keywords import tags_of
from integrations.events import Event
from pbx.storage.call_credits import TAGS_OF_CALL, refresh_facts_in
from pbx.storage.db import Transactions, Tx, conflict_insert
from pbx.storage.outbox import Outbox
from pbx.storage.tables import call_keywords, call_speech, call_tags, calls
from recordings.speech import SpeechResult

MAX_ERROR = 500  # characters of an engine's or ffmpeg's complaint worth keeping
MAX_HEARD = 200  # phrases kept per call: an hour of "price, price, ..." must not fill the disk


_ADD_KEYWORDS = insert(call_keywords)
_ADD_TAGS = insert(call_tags)


class SpeechStore:
    """Writes go through `transactions` (the leases' group commit on a SQLite file): a write
    transaction awaited statement by statement would hold SQLite's lock across many turns of a
    busy event loop, and every lease meanwhile would wait for it."""

    def __init__(
        self,
        engine: AsyncEngine,
        transactions: Transactions,
        outbox: Outbox,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._transactions = transactions
        self._outbox = outbox
        self._clock = clock
        #: the call's call_speech row, unless it has one: its id, else nothing
        self._claim = (
            conflict_insert(call_speech, postgres=engine.dialect.name == "postgresql")
            .on_conflict_do_nothing(index_elements=["call_id"])
            .returning(call_speech.c.call_id)
        )

    def _waiting(self) -> ColumnElement[bool]:
        """Calls whose recording is converted (no longer Asterisk's WAV) and not analysed."""
        return (
            calls.c.recording.is_not(None)
            & ~calls.c.recording.like("%" + AS_RECORDED)
            & ~exists().where(call_speech.c.call_id == calls.c.id)
        )

    async def pending(self, after_id: int | None, limit: int) -> Sequence[tuple[int, str]]:
        """(call id, recording file) of calls waiting for analysis after `after_id`, in id
        order: the shape pbx.job_pool.JobQueue reads."""
        where = self._waiting()
        if after_id is not None:
            where = where & (calls.c.id > after_id)
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(calls.c.id, calls.c.recording).where(where).order_by(calls.c.id).limit(limit)
            )
            return [(row.id, row.recording) for row in rows]

    async def backlog(self) -> int:
        """How many calls wait for analysis (the /metrics gauge)."""
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).where(self._waiting())) or 0)

    async def save(
        self, call_id: int, engine: str, result: SpeechResult, tag_of_phrase: Mapping[str, str]
    ) -> bool:
        """Store the analysis, the phrases heard and the tags they add, in one transaction;
        False (and no change) when the call was analysed before."""
        segments = None if result.segments is None else [asdict(s) for s in result.segments]
        heard = [h for h in result.keywords if h.phrase in tag_of_phrase][:MAX_HEARD]
        row = {
            "call_id": call_id,
            "engine": engine,
            "analysed_at": self._clock(),
            "transcript": result.transcript,
            "segments": None if segments is None else json.dumps(segments),
        }

        def work(tx: Tx) -> int | None:
            """None if the call was analysed before, else how many events were queued."""
            if tx.scalar(self._claim, row) is None:
                return None
            if heard:
                tx.run_many(
                    _ADD_KEYWORDS,
                    [
                        {
                            "call_id": call_id,
                            "phrase": h.phrase,
                            "tag": tag_of_phrase[h.phrase],
                            "at_seconds": h.at_seconds,
                            "channel": h.channel,
                        }
                        for h in heard
                    ],
                )
            has = set(tx.scalars(TAGS_OF_CALL, {"call_id": call_id}))
            added = [t for t in tags_of([h.phrase for h in heard], tag_of_phrase) if t not in has]
            if not added:
                return 0
            tx.run_many(
                _ADD_TAGS, [{"call_id": call_id, "tag": tag, "automatic": True} for tag in added]
            )
            refresh_facts_in(tx, call_id)  # reports count the tags
            return self._outbox.add_in(tx, Event.CALL_UPDATED, call_id)

        queued = await self._transactions.run(work)
        if queued:
            self._outbox.wake()
        return queued is not None

    async def failed(self, call_id: int, engine: str, error: str) -> bool:
        """Mark the call analysed with the reason it could not be; False if it was before."""
        row = {
            "call_id": call_id,
            "engine": engine,
            "analysed_at": self._clock(),
            "error": error[:MAX_ERROR],
        }
        stored = await self._transactions.run(lambda tx: tx.scalar(self._claim, row))
        return stored is not None

    async def expire_transcripts(self, before: float) -> int:
        """Forget the transcripts of calls analysed before `before`; their keywords and tags
        stay (they are what reports count)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(call_speech)
                .where(
                    call_speech.c.analysed_at < before,
                    or_(call_speech.c.transcript.is_not(None), call_speech.c.segments.is_not(None)),
                )
                .values(transcript=None, segments=None)
            )
        return int(result.rowcount)
