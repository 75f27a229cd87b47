"""Pool advice on hand-built records: lost visits by local day and hour, the freeze table and
the sentence, the JSON shape. Expected figures are worked out by hand in each test."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import LeasePolicy, Tracking
from attribution.pool_advice import (
    CallDelays,
    PoolCall,
    PoolRecord,
    PoolVisit,
    PoolVisits,
    advise,
)
from pbx.pool_sizing import SizingError, read_range

MOSCOW = ZoneInfo("Europe/Moscow")  # UTC+3 all year
POLICY = LeasePolicy(freeze_time=15 * 60.0)
MINUTE = 60.0


def at(day: int, hour: int, minute: int = 0) -> float:
    """An instant in November 2026, Moscow time."""
    return datetime(2026, 11, day, hour, minute, tzinfo=MOSCOW).timestamp()


UNHELD = [PoolCall(8, at(2, 11)), PoolCall(9, at(3, 11))]


def record(
    visits: list[PoolVisit],
    delays: list[float] | None = None,
    probable: int = 0,
    unheld: list[PoolCall] | None = None,
) -> PoolRecord:
    return PoolRecord(
        site="shop",
        pool="web",
        numbers=3,
        since=at(1, 0),
        until=at(29, 0),
        visits=visits,
        call_delays=delays or [],
        probable_calls=probable,
        fallback_calls=[PoolCall(7, at(2, 10))],
        unheld_calls=unheld or [],
    )


def test_lost_visits_by_local_day_hour_and_weekday() -> None:
    visits = [
        PoolVisit(at(2, 0, 30), at(2, 0, 40), Tracking.EXHAUSTED),  # Monday 00:30 Moscow
        PoolVisit(at(2, 0, 50), at(2, 1, 0), Tracking.IP_CAP),
        PoolVisit(at(3, 14, 0), at(3, 14, 5), Tracking.EXHAUSTED),  # Tuesday 14:00
        PoolVisit(at(3, 14, 1), at(3, 14, 5), Tracking.TRACKED),
    ]
    advice = advise(record(visits), POLICY, 0.99, MOSCOW)
    # 00:30 Moscow on the 2nd is 21:30 UTC on the 1st: the local day and hour count
    assert datetime.fromtimestamp(visits[0].started_at, UTC).day == 1
    assert {d: (v.exhausted, v.ip_cap) for d, v in advice.lost_by_day.items()} == {
        20261102: (1, 1),
        20261103: (1, 0),
    }
    assert (advice.lost_by_hour[0].exhausted, advice.lost_by_hour[0].ip_cap) == (1, 1)
    assert advice.lost_by_hour[14].total == 1
    assert sum(lost.total for lost in advice.lost_by_hour) == 3
    assert advice.ran_out[0][0] == 1 and advice.ran_out[1][14] == 1
    assert sum(map(sum, advice.ran_out)) == 2  # the IP-capped visit is not the pool running out
    assert advice.visits_not_tracked == 3


def test_the_replay_leaves_out_ip_capped_visits() -> None:
    # three visits at once, one refused for its client's share: two numbers track everyone else
    visits = [
        PoolVisit(at(2, 10), at(2, 10, 5), Tracking.TRACKED),
        PoolVisit(at(2, 10, 1), at(2, 10, 5), Tracking.EXHAUSTED),
        PoolVisit(at(2, 10, 2), at(2, 10, 5), Tracking.IP_CAP),
    ]
    advice = advise(record(visits), POLICY, 0.99, MOSCOW)
    assert advice.replay.visits == 2 and advice.replay.peak == 2 and advice.recommended == 2
    assert advice.replay.peak_at == at(2, 10, 1)


def test_a_visit_refused_at_first_is_lost_and_replayed_by_what_it_held() -> None:
    """A visit keeps its first refusal beside its latest outcome (migration 0023). It counts
    as lost by that refusal; the replay gives it a place if it held a pool number at last or
    asked while the pool was exhausted: an office behind one address, capped at its first page
    and given a number at a later one, held a number of the pool and needs its place."""
    visits = [
        PoolVisit(at(2, 10), at(2, 10, 5), Tracking.TRACKED, refused=Tracking.IP_CAP),
        PoolVisit(at(2, 10, 1), at(2, 10, 5), Tracking.TRACKED, refused=Tracking.EXHAUSTED),
        PoolVisit(at(2, 10, 2), at(2, 10, 5), Tracking.IP_CAP, refused=Tracking.EXHAUSTED),
        PoolVisit(at(2, 10, 3), at(2, 10, 5), Tracking.IP_CAP, refused=Tracking.IP_CAP),
    ]
    advice = advise(record(visits), POLICY, 0.99, MOSCOW)
    assert advice.replay.visits == 3 and advice.replay.peak == 3
    assert advice.visits_not_tracked == 4
    assert (advice.lost_by_hour[10].exhausted, advice.lost_by_hour[10].ip_cap) == (2, 2)
    assert advice.ran_out[0][10] == 2  # Monday 10:00: the two refusals for want of a number


def test_caught_shares_and_the_freeze_that_reaches_the_target() -> None:
    calls = CallDelays.of([24.5 * MINUTE, -30.0, 0.0, 4 * MINUTE, 9 * MINUTE, 14 * MINUTE])
    assert calls.caught(5) == 3 / 6
    assert calls.caught(15) == 5 / 6
    assert calls.caught(25) == 1.0
    assert CallDelays.of([]).caught(15) is None
    assert calls.freeze_for(0.99) == 25.0  # 24.5 minutes, rounded up
    assert calls.freeze_for(0.8) == 14.0  # the 5th of 6 is 14 minutes: 0.8 × 6 = 4.8
    assert CallDelays.of([-5.0]).freeze_for(0.99) == 5.0  # never below the table's shortest
    assert CallDelays.of([]).freeze_for(0.99) is None


def test_calls_no_visit_matched_are_caught_by_no_freeze() -> None:
    # 8 timed calls and 2 nobody could be matched to: at most 80 % can be caught
    calls = CallDelays.of([60.0 * i for i in range(8)], unmatched=2)
    assert calls.total == 10 and calls.caught(60) == 0.8
    assert calls.freeze_for(0.8) == 7.0 and calls.freeze_for(0.9) is None


def quick_and_late(quick: int, late: int, late_minutes: float) -> list[float]:
    """`quick` calls within a minute of leaving, `late` calls `late_minutes` after."""
    return [30.0] * quick + [late_minutes * MINUTE] * late


def test_a_longer_freeze_is_advised_with_the_numbers_it_needs() -> None:
    # two sessions 20 minutes apart, each leaving at once; 40 calls, one of them 24.5 minutes
    # after its visit left: 99 % of 40 is 39.6, so the 40th must be caught too
    visits = [
        PoolVisit(at(2, 10), at(2, 10), Tracking.TRACKED),
        PoolVisit(at(2, 10, 20), at(2, 10, 20), Tracking.TRACKED),
    ]
    advice = advise(record(visits, quick_and_late(39, 1, 24.5)), POLICY, 0.99, MOSCOW)
    # freeze 15: the first is free again at 10:15, before the second comes at 10:20 → 1 number
    # freeze 25: the first is held until 10:25 → 2 numbers
    assert advice.recommended == 1
    assert advice.freeze_advice == (
        "freeze 15m caught 98% of calls; 25m would catch 99% and needs 1 more number"
        " (2 in all for 99% of visits)."
    )
    steps = {step.minutes: (step.caught_share, step.size_needed) for step in advice.freeze}
    assert steps == {
        5: (39 / 40, 1),
        10: (39 / 40, 1),
        15: (39 / 40, 1),
        20: (39 / 40, 2),  # held until 10:20 inclusive: the second arrives while it is held
        30: (1.0, 2),
        45: (1.0, 2),
        60: (1.0, 2),
    }


def test_a_shorter_freeze_is_advised_when_calls_come_quickly() -> None:
    visits = [
        PoolVisit(at(2, 10), at(2, 10), Tracking.TRACKED),
        PoolVisit(at(2, 10, 10), at(2, 10, 10), Tracking.TRACKED),
    ]
    advice = advise(record(visits, quick_and_late(30, 0, 0)), POLICY, 0.99, MOSCOW)
    assert advice.recommended == 2  # 15m: the first is held until 10:15, past 10:10
    assert advice.freeze_advice == (
        "freeze 15m caught 100% of calls; 5m would still catch 99% and needs 1 fewer number"
        " (1 in all for 99% of visits; a shorter freeze also gives late callers' numbers to"
        " others sooner)."
    )


def test_a_freeze_shorter_than_the_tables_that_catches_the_target_is_not_lengthened() -> None:
    """Freeze 3m and every call 30 s late: the advice was "5m would catch 99% and needs N more
    numbers", spending numbers for nothing (the table starts at 5m)."""
    visits = [PoolVisit(at(2, 10), at(2, 10), Tracking.TRACKED)]
    policy = LeasePolicy(freeze_time=3 * 60.0)
    advice = advise(record(visits, quick_and_late(30, 0, 0)), policy, 0.99, MOSCOW)
    assert advice.freeze_advice == "freeze 3m caught 100% of calls; it catches 99% already."


def test_the_same_pool_for_another_freeze_needs_no_more_numbers() -> None:
    visits = [PoolVisit(at(2, 10), at(2, 10), Tracking.TRACKED)]
    advice = advise(record(visits, quick_and_late(29, 1, 40)), POLICY, 0.99, MOSCOW)
    assert advice.freeze_advice == (
        "freeze 15m caught 97% of calls; 40m would catch 99% and needs no more numbers"
        " (1 in all for 99% of visits)."
    )


def test_too_few_calls_give_no_freeze_advice() -> None:
    advice = advise(record([], [60.0] * 29), POLICY, 0.99, MOSCOW)
    assert advice.freeze_advice == (
        "Only 29 calls to measure by in this period: too few to advise a freeze time (at least 30)."
    )


def test_unmatched_calls_can_make_the_target_unreachable() -> None:
    # 2 of the record's 2 unheld calls have no candidate: with 30 timed calls, 30 of 32 caught
    advice = advise(record([], [60.0] * 30, unheld=UNHELD), POLICY, 0.99, MOSCOW)
    assert advice.unmatched_calls == 2
    assert advice.freeze_advice == (
        "freeze 15m caught 94% of calls; 2 of 32 calls matched no visit, so no freeze time"
        " catches 99% of them."
    )


def test_without_calls_there_is_no_freeze_advice_and_shares_are_unknown() -> None:
    advice = advise(record([]), POLICY, 0.99, MOSCOW)
    assert advice.freeze_advice.startswith("Only 0 calls to measure by")
    assert all(step.caught_share is None for step in advice.freeze)
    assert advice.recommended == 0 and advice.replay.peak_at is None


def test_the_json_shape_is_the_one_the_issue_names() -> None:
    visits = [
        PoolVisit(at(2, 10), at(2, 10, 5), Tracking.TRACKED),
        PoolVisit(at(2, 10, 1), at(2, 10, 5), Tracking.EXHAUSTED),
    ]
    shape = advise(record(visits, [60.0], unheld=UNHELD), POLICY, 0.99, MOSCOW).as_json()
    assert list(shape) == [
        "site",
        "pool",
        "numbers",
        "peak_held",
        "peak_at",
        "visits",
        "visits_not_tracked",
        "fallback_calls",
        "unheld_calls",
        "recommended",
        "target",
        "curve",
        "freeze",
        "peak_demand",
        "peak_demand_at",
        "unmatched_calls",
    ]
    assert shape["curve"] == [[1, 0.5], [2, 1.0]]
    assert shape["peak_held"] == 2 and shape["recommended"] == 2 and shape["target"] == 0.99
    assert (shape["fallback_calls"], shape["unheld_calls"], shape["visits_not_tracked"]) == (
        1,
        2,
        1,
    )
    # one timed call and the two unheld ones no visit matched: a third caught by any freeze
    assert shape["freeze"][0] == [5, 0.333333, 2]
    assert (shape["peak_held"], shape["peak_demand"], shape["unmatched_calls"]) == (2, 2, 2)


def test_the_range_ends_at_until_and_by_default_starts_28_days_before_it() -> None:
    today = date(2026, 12, 3)
    assert read_range(None, None, today, 400) == (date(2026, 11, 6), today)
    assert read_range(None, "2026-10-31", today, 400) == (date(2026, 10, 4), date(2026, 10, 31))
    assert read_range("2026-10-01", None, today, 400) == (date(2026, 10, 1), today)


def test_the_range_starts_no_earlier_than_the_visits_kept() -> None:
    """With visits.keep_days 14, the days before kept only the visits calls refer to, and the
    advice over the default 28 days sized the pool by half of them, saying "28 days"."""
    today = date(2026, 12, 3)
    assert read_range(None, None, today, 14) == (date(2026, 11, 20), today)
    with pytest.raises(
        SizingError, match=r"kept 14 days \(visits.keep_days\): expected 2026-11-20"
    ):
        read_range("2026-11-19", None, today, 14)


@given(
    st.lists(
        st.builds(
            PoolVisit,
            st.floats(0, 2e9, allow_nan=False),
            st.floats(0, 2e9, allow_nan=False),
            st.sampled_from(Tracking),
            st.none() | st.sampled_from(Tracking),
        ),
        max_size=30,
    ),
    st.integers(-40, 40),
    st.slices(40),
)
def test_pool_visits_hold_what_a_list_of_them_holds(
    visits: list[PoolVisit], index: int, part: slice
) -> None:
    """Storage keeps a pool's visits in flat arrays (18 bytes a visit, not ~120): they read
    back as the list of PoolVisit they stand for."""
    compact = PoolVisits(visits)
    assert len(compact) == len(visits)
    assert list(compact) == visits and list(reversed(compact)) == visits[::-1]
    assert compact[part] == visits[part]
    if -len(visits) <= index < len(visits):
        assert compact[index] == visits[index]
    else:
        with pytest.raises(IndexError):
            compact[index]
