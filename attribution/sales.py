"""Which call a deal the CRM closed belongs to: the caller's latest call before the sale.

A deal is often closed days after the call that brought the customer, so the CRM reports it
later (`POST /api/v1/sales`) and it is credited to the channel of that call. Only a call at or
before the sale's time can have brought it (a call after it is the customer calling about a deal
already made), and only one at most `sales.match_days` before it (an older one is a customer who
came back some other way).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

DAY = 86_400.0
REFERENCE_MAX = 128  # the CRM's id of a deal


@dataclass(frozen=True)
class CallSeen:
    """One call from the caller: its id and when it started (Unix seconds)."""

    call_id: int
    started_at: float


class Unmatched(StrEnum):
    """Why a sale matches no call."""

    NO_CALLS = "no_calls"  # nobody called from that number
    ONLY_LATER = "only_later"  # every call came after the sale
    TOO_OLD = "too_old"  # the latest call before the sale is older than match_days


def window_start(at: float, match_days: int) -> float:
    """The earliest start of a call that can be credited with a sale at `at`."""
    return at - match_days * DAY


def credited_call(calls: Iterable[CallSeen], at: float, match_days: int) -> CallSeen | Unmatched:
    """The caller's latest call in [at - match_days, at] (the higher id on a tie), or why none.

    Only two of the caller's calls decide it: the latest one at or before `at` and any one after
    it; storage may pass just those two.
    """
    seen = list(calls)
    before = [call for call in seen if call.started_at <= at]
    if not before:
        return Unmatched.ONLY_LATER if seen else Unmatched.NO_CALLS
    latest = max(before, key=lambda call: (call.started_at, call.call_id))
    if latest.started_at < window_start(at, match_days):
        return Unmatched.TOO_OLD
    return latest


def why_unmatched(why: Unmatched, caller: str, match_days: int) -> str:
    """The 404's reason, for the person reading the CRM's integration log."""
    if why is Unmatched.NO_CALLS:
        return f"no calls from {caller}"
    if why is Unmatched.ONLY_LATER:
        return f"every call from {caller} came after the sale (a later call cannot have brought it)"
    return (
        f"the latest call from {caller} before the sale is older than {match_days} days"
        " (sales.match_days)"
    )
