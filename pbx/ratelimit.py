"""Limits kept in memory per daemon: sliding-window failure counters and the login guard that
applies them (and the ceiling per user name the database keeps for all daemons) around the
(deliberately slow) password check; hourly counts of new visits."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from attribution.clients import client_network

MAX_KEYS = 100_000  # a flood of distinct keys cannot grow memory without bound


class FailureLimit:
    """At most `limit` failures per key within `window` seconds; then callers must wait."""

    def __init__(
        self, clock: Callable[[], float], limit: int, window: float, max_keys: int = MAX_KEYS
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again; 0 when none is over the limit."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self._limit:
                wait = max(wait, times[0] + self._window - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            if key not in self._failures and len(self._failures) >= self._max_keys:
                self._make_room(now)
            self._failures.setdefault(key, deque()).append(now)

    def cancel(self, keys: Iterable[str]) -> None:
        """Take back one counted failure per key (the attempt turned out to be a success)."""
        for key in keys:
            times = self._failures.get(key)
            if times:
                times.pop()
                if not times:
                    del self._failures[key]

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def _make_room(self, now: float) -> None:
        """Drop expired keys, then the keys with the fewest failures: a flood of junk keys (one
        failure each) never erases the count of a key that is being guessed at. A tenth of the
        room is freed at once, so the sorting is rare."""
        for key in list(self._failures):
            self._recent(key, now)
        excess = len(self._failures) - self._max_keys * 9 // 10
        if excess > 0:
            fewest = sorted(self._failures, key=lambda k: len(self._failures[k]))[:excess]
            for key in fewest:
                del self._failures[key]

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times


class LoginRefused(Exception):
    """The password was not checked; `retry_after` seconds from now it may be."""

    def __init__(self, retry_after: float, busy: bool) -> None:
        super().__init__(retry_after, busy)
        self.retry_after = retry_after
        self.busy = busy  # too many logins being checked at once, not too many failures


class FailureLedger(Protocol):
    """Failures per user name counted by every daemon on the database
    (pbx.storage.login_failures.LoginFailures)."""

    async def add(self, name: str, now: float, window: float) -> tuple[int, int]: ...

    async def oldest(self, name: str, now: float, window: float) -> float | None: ...

    async def remove(self, failure_id: int) -> None: ...


class LoginGuard:
    """Decides whether a password may be checked now, and counts the attempt first.

    - `limit` failures per address, and per user name from one address, in `window`: then the
      next attempts are refused. Counted in this daemon's memory.
    - `ceiling` failures for a user name from all addresses on all daemons in `window`: then
      every attempt for that name is refused until the oldest failure leaves the window. Counted
      in the database (`share`), so N daemons do not allow N times the guesses at one account.
      Whether the user exists makes no difference. The price: a guesser who spends the ceiling
      locks the name out for the window; the addresses it takes are what makes that hard.
    - at most `hash_slots` password hashes run at once (they take real CPU, in threads) and
      `hash_queue` wait; any more are refused at once, so a flood cannot starve the event loop.

    The attempt is counted as a failure before the hash starts (and taken back on success), so
    parallel guesses cannot all pass the check before any failure is recorded.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        limit: int = 10,
        ceiling: int = 100,
        window: float = 300.0,
        hash_slots: int = 2,
        hash_queue: int = 8,
    ) -> None:
        self._clock = clock
        self._blocking = FailureLimit(clock, limit, window)
        self._ceiling = ceiling
        self._window = window
        self._ledger: FailureLedger | None = None
        self._slots = asyncio.Semaphore(hash_slots)
        self._room = hash_slots + hash_queue
        self._admitted = 0

    def share(self, ledger: FailureLedger) -> None:
        """Count the failures per user name in `ledger` (the app does once the database is open)."""
        self._ledger = ledger

    async def check(self, name: str, address: str | None, verify: Callable[[], bool]) -> bool:
        """Run `verify` (a password check) in a thread if allowed; raises LoginRefused if not."""
        name = name[:64].lower()  # longer names are no user's: a key stays small
        net = client_network(address)
        blocking = [f"ip:{net}", f"user:{name}@{net}"]
        self._refuse_if_blocked(blocking)
        if self._admitted >= self._room:
            raise LoginRefused(1.0, busy=True)
        self._admitted += 1
        try:
            async with self._slots:
                self._refuse_if_blocked(blocking)  # others may have failed while this one waited
                self._blocking.failed(blocking)  # before any await: parallel guesses see it
                try:
                    shared = await self._count_shared(name)
                except LoginRefused:
                    self._blocking.cancel(blocking)  # not checked: not a guess
                    raise
                ok = await asyncio.to_thread(verify)
        finally:
            self._admitted -= 1
        if ok:
            self._blocking.cancel(blocking[:1])
            self._blocking.forget(blocking[1])
            if shared is not None and self._ledger is not None:
                await self._ledger.remove(shared)  # only this attempt: the others' still count
        return ok

    async def _count_shared(self, name: str) -> int | None:
        """Counts the attempt in the ledger (its id), or raises LoginRefused over the ceiling."""
        if self._ledger is None:
            return None
        now = self._clock()
        failure_id, count = await self._ledger.add(name, now, self._window)
        if count <= self._ceiling:
            return failure_id
        await self._ledger.remove(failure_id)  # refused unchecked: not a guess
        oldest = await self._ledger.oldest(name, now, self._window)
        raise LoginRefused(max(1.0, (oldest or now) + self._window - now), busy=False)

    def _refuse_if_blocked(self, keys: list[str]) -> None:
        if (wait := self._blocking.retry_after(keys)) > 0:
            raise LoginRefused(wait, busy=False)


class HourlyCount:
    """At most `limit` events per key in each clock hour: one small counter per key, so that a
    limit of thousands costs no more memory than a limit of ten."""

    def __init__(self, clock: Callable[[], float], limit: int, max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._limit = limit
        self._max_keys = max_keys
        self._hour = -1
        self._counts: dict[str, int] = {}

    def take(self, key: str) -> float:
        """Count one event of `key`; 0 when allowed, else seconds until the next hour."""
        now = self._clock()
        hour = int(now // 3600)
        if hour != self._hour:
            self._hour, self._counts = hour, {}
        count = self._counts.get(key, 0)
        if count >= self._limit:
            return (hour + 1) * 3600 - now
        if count == 0 and len(self._counts) >= self._max_keys:
            # a flood of distinct keys: forget the lightest half rather than grow without bound
            for light in sorted(self._counts, key=self._counts.__getitem__)[: self._max_keys // 2]:
                del self._counts[light]
        self._counts[key] = count + 1
        return 0.0
