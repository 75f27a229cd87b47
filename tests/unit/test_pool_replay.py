"""Pool-size replay on hand-built histories with a known answer, and against a direct
simulation of each pool size (the oracle here: one pool of N numbers, taken first come)."""

from __future__ import annotations

import heapq

from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import LeasePolicy
from attribution.pool_replay import Arrivals, RecordedVisit, Replay, replay

FREEZE = LeasePolicy(freeze_time=60.0)


def replayed(*visits: tuple[float, float]) -> Replay:
    return replay(Arrivals.of(RecordedVisit(a, b) for a, b in visits), FREEZE)


def pool_of(size: int, visits: list[tuple[float, float]]) -> int:
    """How many visits a pool of `size` numbers serves, simulated directly: a number is held
    until the last activity plus the freeze time, inclusive."""
    held: list[float] = []
    served = 0
    for arrival, last in sorted(visits):
        held = [until for until in held if until >= arrival]
        if len(held) < size:
            heapq.heappush(held, max(arrival, last + FREEZE.freeze_time))
            served += 1
    return served


def test_five_overlapping_sessions_need_five_numbers() -> None:
    five = replayed(*((float(i), 100.0) for i in range(5)))
    assert (five.peak, five.peak_at) == (5, 4.0)
    assert [five.tracked(n) for n in range(7)] == [0, 1, 2, 3, 4, 5, 5]
    assert five.smallest_for(1.0) == 5 and five.smallest_for(0.6) == 3
    assert five.curve() == [(1, 0.2), (2, 0.4), (3, 0.6), (4, 0.8), (5, 1.0)]


def test_a_pool_of_a_given_size_holds_at_most_that_many() -> None:
    five = replay(Arrivals.of(RecordedVisit(float(i), 100.0) for i in range(5)), FREEZE, size=3)
    assert (five.held_peak, five.held_peak_at) == (3, 2.0)
    assert (five.peak, five.peak_at) == (5, 4.0)


def test_a_number_is_free_only_after_the_freeze_time() -> None:
    # the first holds until 10 + 60 = 70: at 70 it is still held, at 70.5 it is free again
    history = replayed((0.0, 10.0), (70.0, 80.0), (70.5, 90.0))
    assert history.tracked(1) == 2  # the first and the third
    assert history.curve() == [(1, 2 / 3), (2, 1.0)]
    assert history.peak_at == 70.0


def test_sessions_one_after_another_share_one_number() -> None:
    history = replayed(*((i * 1000.0, i * 1000.0 + 300) for i in range(10)))
    assert history.peak == 1 and history.share(1) == 1.0 and history.smallest_for(0.99) == 1


def test_no_visits_need_no_numbers() -> None:
    empty = replayed()
    assert empty.smallest_for(0.99) == 0 and empty.curve() == [] and empty.share(3) == 1.0
    assert empty.peak_at is None


def test_a_target_of_seven_percent_is_met_by_exactly_seven_visits_in_a_hundred() -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point: 7 of 100 must still be enough
    hundred = replayed(*((0.0, 10.0) for _ in range(100)))
    assert hundred.smallest_for(0.07) == 7 and hundred.smallest_for(0.0) == 0


visits = st.lists(
    st.tuples(st.integers(0, 500), st.integers(0, 300)).map(
        lambda v: (float(v[0]), float(v[0] + v[1]))
    ),
    max_size=40,
)


@given(visits)
def test_one_pass_counts_what_each_pool_size_would_have_served(
    history: list[tuple[float, float]],
) -> None:
    result = replayed(*history)
    assert result.visits == len(history)
    for size in range(len(history) + 2):
        assert result.tracked(size) == pool_of(size, history)
    # the peak is the smallest pool that serves everyone
    assert pool_of(result.peak, history) == len(history)
    for size in range(len(history) + 2):
        capped = replay(Arrivals.of(RecordedVisit(a, b) for a, b in history), FREEZE, size)
        assert capped.held_peak == min(size, result.peak)
    assert result.peak == 0 or pool_of(result.peak - 1, history) < len(history)


@given(visits, st.sampled_from([0.5, 0.9, 0.99, 1.0]))
def test_the_recommendation_is_the_smallest_size_that_reaches_the_target(
    history: list[tuple[float, float]], target: float
) -> None:
    size = replayed(*history).smallest_for(target)
    total = len(history)
    if total:
        assert pool_of(size, history) >= target * total
        assert size == 0 or pool_of(size - 1, history) < target * total
