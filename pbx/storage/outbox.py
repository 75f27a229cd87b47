"""The outbox: events for other systems, written in the transaction that makes them true.

A call's row and its `call.completed` rows commit together, so a daemon killed after the commit
still delivers (its worker, or another daemon's, finds the rows), and a rolled-back call sends
nothing. One row per event and target: each webhook retries, and is seen on the admin page, on
its own. Delivery is integrations/'s; this module only writes the rows and wakes the worker.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from integrations.events import GA4_TARGET, Event
from pbx.settings import Settings
from pbx.storage.db import Tx, conflict_insert, run_in
from pbx.storage.tables import outbox

PENDING, DELIVERED, FAILED, SKIPPED = "pending", "delivered", "failed", "skipped"
#: how long GA4 events are retried: the Measurement Protocol takes events up to 72 h old
GA4_RETRY_FOR = 72 * 3600.0
#: an event already written under its derived id (once_per) is not written twice
_INSERT = {
    postgres: conflict_insert(outbox, postgres=postgres).on_conflict_do_nothing(
        index_elements=["event_id"]
    )
    for postgres in (False, True)
}


def _derived_id(event: Event, once_per: str, target: str) -> str:
    """An event id (32 hex digits, as a random one) that is the same for the same event of
    the same thing to the same target."""
    return hashlib.sha256(f"{event}\0{once_per}\0{target}".encode()).hexdigest()[:32]


class Outbox:
    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._wakers: list[Callable[[], None]] = []

    def targets(self, event: Event) -> list[tuple[str, float]]:
        """(target, how long to retry) of every receiver of `event`."""
        found = [
            (t.name, t.retry_for) for t in self._settings.webhooks.targets if event in t.events
        ]
        if self._settings.ga4 is not None and event is Event.CALL_COMPLETED:
            found.append((GA4_TARGET, GA4_RETRY_FOR))
        return found

    async def add(
        self,
        conn: AsyncConnection,
        event: Event,
        call_id: int,
        sale_reference: str | None = None,
        *,
        once_per: str | None = None,
    ) -> int:
        """add_in, in the async transaction `conn`."""
        return await run_in(
            conn, lambda tx: self.add_in(tx, event, call_id, sale_reference, once_per=once_per)
        )

    def add_in(
        self,
        tx: Tx,
        event: Event,
        call_id: int,
        sale_reference: str | None = None,
        *,
        once_per: str | None = None,
    ) -> int:
        """Write `event` for each of its targets in the caller's transaction; call `wake`
        after the commit. Returns how many rows were written.

        `once_per`: what makes the event happen once only (a call's Linkedid for
        call.completed). Its id is then derived from it, so the event written again for the
        same thing has the same id and a receiver drops it: after a restore from a backup,
        the calls stored since are read again from the CDR and their call.completed written
        again, which under new random ids made a CRM create their leads twice."""
        now = self._clock()
        rows = [
            {
                "event_id": secrets.token_hex(16)
                if once_per is None
                else _derived_id(event, once_per, target),
                "target": target,
                "event": str(event),
                "call_id": call_id,
                "sale_reference": sale_reference,
                "created_at": now,
                "state": PENDING,
                "due_at": now,
                "give_up_at": now + retry_for,
            }
            for target, retry_for in self.targets(event)
        ]
        if rows:
            tx.run_many(_INSERT[tx.postgres], rows)
        return len(rows)

    def on_added(self, waker: Callable[[], None]) -> None:
        """`waker` is called after events were committed (the worker delivers at once)."""
        self._wakers.append(waker)

    def wake(self) -> None:
        for waker in self._wakers:
            waker()
