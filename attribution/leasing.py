"""The rules of number leases, free of storage: when a lease is held, who held a number when.

A lease is held while its session is active and for `freeze_time` after the last activity, so a
visitor who calls from the car minutes later still reaches their own session. A held number is
never handed to another session; among free numbers the one free the longest is handed out, so
a late call still finds the session that held it as often as possible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from attribution.clients import is_public


class Tracking(StrEnum):
    """Why a visit has, or has not, a tracking number: the pool-size report counts these."""

    TRACKED = "tracked"
    NO_POOL = "no_pool"  # matched no pool: the site's own number
    EXHAUSTED = "exhausted"  # the pool had no free number: the fallback number
    PRIVACY = "privacy"  # DNT/GPC respected: the site's own number
    IP_CAP = "ip_cap"  # one client holds too many numbers: the fallback number


#: outcomes of a matching pool that gave no number (the visitor sees the fallback number): the
#: pool-size report's lost visits, and what a later page of the session retries
REFUSED = frozenset({Tracking.EXHAUSTED, Tracking.IP_CAP})


@dataclass(frozen=True)
class LeasePolicy:
    freeze_time: float
    #: how many numbers one client address may hold at once, over all pools
    max_per_client: int = 200
    #: the share of one pool's numbers one public client address may hold at once: a scraper
    #: that runs the widget from one address must not drain a small pool (200 is more than
    #: most pools have), and the other visitors keep the rest. Not a private address: that is
    #: the site's own proxy or NAT, with every visitor behind it (clients.is_public)
    max_pool_share_per_client: float = 1.0
    #: a cached lease is extended without asking the database only while it is this far from
    #: expiring; it must exceed the longest delay of the write-behind flush
    sync_margin: float = 5.0

    def pool_cap(self, pool_size: int) -> int:
        """How many of a pool of `pool_size` numbers one client may hold at once: its share,
        rounded up, and never less than one (a client always gets a number of a free pool)."""
        return max(1, math.ceil(self.max_pool_share_per_client * pool_size - 1e-9))

    def may_take(
        self, client_ip: str | None, held_by_client: int, held_in_pool: int, pool_size: int
    ) -> bool:
        """Whether a session of `client_ip` may take one more number of a pool of `pool_size`,
        its client holding `held_by_client` numbers in all, `held_in_pool` of them there.

        Every path that takes a number asks this, with the address the session started from,
        so a refused session cannot get round the cap by pinging. A session with no known
        address (none was recorded) is not capped: there is nothing to count it against.
        """
        if client_ip is None or held_by_client >= self.max_per_client:
            return client_ip is None
        if not is_public(client_ip):
            return True
        # a share that comes to the whole pool caps nothing: the pool runs out first (EXHAUSTED)
        cap = self.pool_cap(pool_size)
        return held_in_pool < cap or cap >= pool_size

    def held_until(self, last_activity: float) -> float:
        return last_activity + self.freeze_time

    @staticmethod
    def is_held(held_until: float | None, now: float) -> bool:
        return held_until is not None and held_until >= now

    def may_extend_unconfirmed(self, confirmed_held_until: float, now: float) -> bool:
        """True when no other session can take the number before a delayed write lands."""
        return now + self.sync_margin <= confirmed_held_until


@dataclass(frozen=True)
class LeaseSpan:
    lease_id: str
    number: str
    session_id: str
    started_at: float
    held_until: float


def holder_at(spans: Iterable[LeaseSpan], at: float) -> LeaseSpan | None:
    """The lease that held the number at instant `at` (spans of one number never overlap)."""
    best: LeaseSpan | None = None
    for span in spans:
        if span.started_at <= at <= span.held_until and (
            best is None or span.started_at > best.started_at
        ):
            best = span
    return best
