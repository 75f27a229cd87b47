"""Pool-size replay on hand-built histories with a known answer, and its invariants."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import LeasePolicy
from attribution.pool_replay import RecordedVisit, Spans, curve, peak_held, recommend, tracked

FREEZE = LeasePolicy(freeze_time=60.0)


def spans(*visits: tuple[float, float]) -> Spans:
    return Spans.of((RecordedVisit(a, b) for a, b in visits), FREEZE)


def test_five_overlapping_sessions_need_five_numbers() -> None:
    five = spans(*((float(i), 100.0) for i in range(5)))
    assert peak_held(five) == (5, 4.0)
    assert [tracked(five, n) for n in range(7)] == [0, 1, 2, 3, 4, 5, 5]
    assert recommend(five, 1.0) == 5 and recommend(five, 0.6) == 3


def test_a_number_is_free_only_after_the_freeze_time() -> None:
    # the first holds until 10 + 60 = 70: at 70 it is still held, at 70.5 it is free again
    history = spans((0.0, 10.0), (70.0, 80.0), (70.5, 90.0))
    assert tracked(history, 1) == 2  # the first and the third
    assert curve(history, [1, 2]) == [(1, 2 / 3), (2, 1.0)]


def test_no_visits_need_no_numbers() -> None:
    assert recommend(spans(), 0.99) == 0 and curve(spans(), [0, 3]) == [(0, 1.0), (3, 1.0)]


visits = st.lists(
    st.tuples(st.integers(0, 500), st.integers(0, 300)).map(
        lambda v: (float(v[0]), float(v[0] + v[1]))
    ),
    max_size=40,
)


@given(visits)
def test_a_bigger_pool_never_tracks_fewer_visits(history: list[tuple[float, float]]) -> None:
    replay = spans(*history)
    counts = [tracked(replay, n) for n in range(len(history) + 2)]
    assert counts == sorted(counts)
    peak, _ = peak_held(replay)
    assert tracked(replay, peak) == len(history)
    assert peak == 0 or tracked(replay, peak - 1) < len(history)


@given(visits, st.sampled_from([0.5, 0.9, 0.99, 1.0]))
def test_the_recommendation_is_the_smallest_size_that_reaches_the_target(
    history: list[tuple[float, float]], target: float
) -> None:
    replay = spans(*history)
    size = recommend(replay, target)
    total = len(history)
    if total:
        assert tracked(replay, size) / total >= target
        assert size == 0 or tracked(replay, size - 1) / total < target
