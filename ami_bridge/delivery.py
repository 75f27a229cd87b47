"""Finished calls handed to the store: retried while the database is away, skipped when it
refuses one for good, so one bad report never holds back the calls after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from attribution.calls import CallReport

log = logging.getLogger(__name__)

#: Stores a report; True if the call was new (the store keeps one record per Linkedid).
StoreReport = Callable[[CallReport], Awaitable[bool]]


class ReportDelivery:
    """Calls `store` until it succeeds, as long as its failures are `transient`.

    Retrying cannot double a call: the store is idempotent on Linkedid. The wait between tries
    stops growing at `max_backoff`: a call is stored at most that long after the database is
    back (one try every 5 s against a database that is away costs nothing). A failure that is not
    transient would fail the same way forever, so the report is logged whole (the call is still
    in Asterisk's CDR), `on_rejected` is told, and the next report goes ahead.
    """

    def __init__(
        self,
        store: StoreReport,
        transient: Callable[[Exception], bool],
        on_rejected: Callable[[CallReport], None] = lambda _report: None,
        *,
        max_backoff: float = 5.0,
    ) -> None:
        self._store = store
        self._transient = transient
        self._on_rejected = on_rejected
        self._max_backoff = max_backoff

    async def __call__(self, report: CallReport) -> bool:
        """True if the call was stored now, False if it already was or was refused."""
        delay = 0.5
        while True:
            try:
                return await self._store(report)
            except Exception as error:
                if not self._transient(error):
                    log.exception(
                        "call %s refused by the database, skipped: %r", report.linkedid, report
                    )
                    self._on_rejected(report)
                    return False
                log.warning(
                    "storing call %s failed (%s); retrying in %.1fs", report.linkedid, error, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)
