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
        self._in_flight: dict[asyncio.Task[None], list[CallReport]] = {}

    async def hand_over(self, reports: list[CallReport]) -> None:
        """Store `reports` in order, in a task of their own, and wait for them.

        Cancelling the caller does not cancel them: a bridge that steps down from AMI (on
        PostgreSQL its consumer lock goes with the database connection, as in a restart of
        the database) was cancelled in the middle of the retries of a call it had folded, and
        the call was gone: no other daemon sees those events again, and without cdr_csv
        nothing recovers it. Now it is stored once the database is back (the store is
        idempotent, so a call also recovered from the CDR is not doubled)."""
        await asyncio.shield(self.start(reports))

    def start(self, reports: list[CallReport]) -> asyncio.Task[None]:
        """Store `reports` in order, after those handed over before them, in a task of their
        own that no caller's cancellation stops (see hand_over); `finish` waits for it at
        shutdown. After: a caller's later call stored first would take its "called before"
        from the earlier one, and the earlier one would not get it."""
        earlier = list(self._in_flight)
        task = asyncio.create_task(self._each(reports, earlier), name="call-reports")
        self._in_flight[task] = reports
        task.add_done_callback(self._in_flight.pop)
        return task

    async def _each(self, reports: list[CallReport], after: list[asyncio.Task[None]]) -> None:
        if after:
            await asyncio.wait(after)
        for report in reports:
            await self(report)

    async def finish(self, seconds: float) -> None:
        """At shutdown: wait up to `seconds` for calls still being stored (the database away),
        then give them up, logged by Linkedid: the CDR's reconciliation recovers them."""
        if not self._in_flight:
            return
        _, left = await asyncio.wait(list(self._in_flight), timeout=seconds)
        if not left:
            return
        lost = [report.linkedid for task in left for report in self._in_flight.get(task, [])]
        log.warning(
            "stopping with %d calls not stored (the database away): %s; they are recovered"
            " from the CDR when asterisk.cdr_csv is set",
            len(lost),
            ", ".join(lost),
        )
        for task in left:
            task.cancel()
        await asyncio.wait(left)

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
