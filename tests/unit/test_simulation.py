"""The accuracy simulator: deterministic per seed, and the issue's targets on its default run."""

from __future__ import annotations

import functools
from itertools import pairwise

from attribution.leasing import LeasePolicy
from attribution.simulation import RELATIVE_SIZES, Model, Simulation, Traffic

FREEZE = 15 * 60.0
SMALL = Model(days=2, visits_per_day=600)


@functools.cache
def simulation(model: Model) -> Simulation:
    return Simulation(model, LeasePolicy(freeze_time=FREEZE))


def held_intervals(traffic: Traffic) -> list[tuple[float, float]]:
    """Each visit's stretches of holding a number with an unlimited pool, worked out here from
    the activity alone: from an activity until the freeze time after the next one, joined while
    the gap between two activities is within the freeze time."""
    intervals = []
    for acts in traffic.activity:
        start = acts[0]
        for before, after in pairwise(acts):
            if after - before > FREEZE:
                intervals.append((start, before + FREEZE))
                start = after
        intervals.append((start, acts[-1] + FREEZE))
    return intervals


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 0) for s, _ in intervals] + [(e, 1) for _, e in intervals])
    most = now = 0
    for _, is_end in points:  # a stretch ending at t still holds at t: starts sort first
        now += -1 if is_end else 1
        most = max(most, now)
    return most


def test_the_same_seed_gives_the_same_figures_and_another_seed_others() -> None:
    def figures(seed: int) -> list[object]:
        sim = Simulation(Model(seed=seed, days=1, visits_per_day=400), LeasePolicy(FREEZE))
        return [sim.minimum] + [sim.run(sim.size(0.75), a) for a in ("longest_free", "random_free")]

    assert figures(3) == figures(3)
    assert figures(3) != figures(4)


def test_the_minimum_is_the_most_visits_holding_a_number_at_once() -> None:
    sim = simulation(SMALL)
    assert sim.minimum == most_at_once(held_intervals(sim.traffic))


def test_a_pool_of_the_minimum_or_more_tracks_every_visit() -> None:
    sim = simulation(SMALL)
    for allocator in ("longest_free", "random_free"):
        for size in (sim.minimum, sim.minimum + 3):
            assert sim.run(size, allocator).not_tracked == 0
    assert sim.run(sim.minimum - 1, "longest_free").not_tracked > 0


def test_an_exhausted_pool_never_credits_a_call_within_the_freeze_time_to_another_visit() -> None:
    sim = simulation(SMALL)
    for allocator in ("longest_free", "random_free"):
        exhausted = sim.run(sim.size(0.5), allocator)
        assert exhausted.not_tracked > 0 and exhausted.wrong > 0  # late calls can go wrong
        assert exhausted.wrong_in_freeze == 0
        assert exhausted.right + exhausted.wrong + exhausted.none == exhausted.calls


def test_at_1_1_times_the_minimum_every_call_the_freeze_time_covers_is_right() -> None:
    """The issue's 99 % target, on the default traffic. Above the minimum nothing is exhausted,
    so what is lost is the calls placed after the caller's lease ran out (the freeze time's
    cost, not the pool's): counted here from the traffic alone."""
    sim = simulation(Model())
    outcome = sim.run(sim.size(1.1), "longest_free")
    traffic = sim.traffic
    in_freeze = sum(
        max(a for a in traffic.activity[c.session] if a <= c.at) + FREEZE >= c.at
        for c in traffic.calls
    )
    assert outcome.right / in_freeze >= 0.99
    assert outcome.right == in_freeze == sim.in_freeze
    assert 0.85 < outcome.right / outcome.calls < 0.99  # the late tail: see README


def test_free_the_longest_credits_fewer_calls_wrongly_than_a_random_free_number() -> None:
    sim = simulation(Model())
    wrong = {
        allocator: sum(sim.run(sim.size(r), allocator).wrong for r in RELATIVE_SIZES)
        for allocator in ("longest_free", "random_free")
    }
    assert wrong["longest_free"] < wrong["random_free"]
