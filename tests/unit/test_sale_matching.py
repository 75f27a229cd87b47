"""The rule that credits a CRM's sale to a call (attribution/sales.py), on hand-picked edges and
on random call histories checked against a brute-force reading of the rule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.sales import CallSeen, Unmatched, credited_call, why_unmatched

AT = 1_800_000_000.0
DAYS = 90
SPAN = DAYS * 86_400.0


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ([], Unmatched.NO_CALLS),
        ([CallSeen(1, AT + 1)], Unmatched.ONLY_LATER),
        ([CallSeen(1, AT - SPAN - 0.001)], Unmatched.TOO_OLD),
        ([CallSeen(1, AT - SPAN)], 1),  # exactly match_days before: still credited
        ([CallSeen(1, AT)], 1),  # at the sale's instant: credited
        ([CallSeen(1, AT - 10), CallSeen(2, AT - 5), CallSeen(3, AT + 1)], 2),
        ([CallSeen(7, AT - 5), CallSeen(3, AT - 5)], 7),  # same start: the later-stored call
        ([CallSeen(1, AT - SPAN - 1), CallSeen(2, AT + 1)], Unmatched.TOO_OLD),
    ],
)
def test_edges(calls: list[CallSeen], expected: int | Unmatched) -> None:
    result = credited_call(calls, AT, DAYS)
    assert (result.call_id if isinstance(result, CallSeen) else result) == expected


def test_the_window_follows_match_days() -> None:
    call = [CallSeen(1, AT - 10 * 86_400.0)]
    assert credited_call(call, AT, 10) == call[0]
    assert credited_call(call, AT, 9) is Unmatched.TOO_OLD


def test_each_reason_names_the_caller_and_what_went_wrong() -> None:
    assert why_unmatched(Unmatched.NO_CALLS, "+79161234567", 90) == "no calls from +79161234567"
    assert "after the sale" in why_unmatched(Unmatched.ONLY_LATER, "+79161234567", 90)
    assert "older than 90 days" in why_unmatched(Unmatched.TOO_OLD, "+79161234567", 90)


# offsets from AT in seconds around the edges that matter: the sale instant and the window start
_OFFSETS = st.sampled_from([-SPAN - 1, -SPAN - 0.001, -SPAN, -SPAN + 1, -5.0, -1.0, 0.0, 1.0])
_HISTORIES = st.lists(
    st.tuples(st.integers(1, 30), st.one_of(_OFFSETS, st.floats(-2 * SPAN, SPAN))),
    unique_by=lambda pair: pair[0],
    max_size=12,
)


def _brute_force(calls: list[CallSeen], days: int) -> int | Unmatched:
    """The rule read literally: in the window, the latest, then the highest id."""
    if not calls:
        return Unmatched.NO_CALLS
    if all(call.started_at > AT for call in calls):
        return Unmatched.ONLY_LATER
    window = [c for c in calls if AT - days * 86_400.0 <= c.started_at <= AT]
    if not window:
        return Unmatched.TOO_OLD
    best = window[0]
    for call in window[1:]:
        if call.started_at > best.started_at or (
            call.started_at == best.started_at and call.call_id > best.call_id
        ):
            best = call
    return best.call_id


@given(_HISTORIES, st.integers(1, 3650), st.randoms(use_true_random=False))
def test_the_rule_on_random_histories(
    history: list[tuple[int, float]], days: int, shuffler: random.Random
) -> None:
    calls = [CallSeen(call_id, AT + offset) for call_id, offset in history]
    result = credited_call(calls, AT, days)
    assert (result.call_id if isinstance(result, CallSeen) else result) == _brute_force(calls, days)
    shuffler.shuffle(calls)  # the order calls come in does not matter
    assert credited_call(calls, AT, days) == result


@given(_HISTORIES, st.integers(1, 3650))
def test_two_calls_decide_it(history: list[tuple[int, float]], days: int) -> None:
    """What storage relies on: the latest call at or before the sale and the first one after it
    give the same answer as the caller's whole history."""
    calls = [CallSeen(call_id, AT + offset) for call_id, offset in history]
    before = [c for c in calls if c.started_at <= AT]
    after = [c for c in calls if c.started_at > AT]
    summary = [max(before, key=lambda c: (c.started_at, c.call_id))] if before else []
    summary += [min(after, key=lambda c: (c.started_at, c.call_id))] if after else []
    assert credited_call(summary, AT, days) == credited_call(calls, AT, days)
