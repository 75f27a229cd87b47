"""bench/speech.py's verdict on whether speech moved the lease p99 beyond noise."""

from __future__ import annotations

from bench.speech import LeaseRun, permutation_p, verdict


def test_the_permutation_test_counts_every_split_at_least_as_far_apart() -> None:
    # 70 ways to pick 4 of 8; medians 2.5 vs 6.5 apart by 4, and only {1,2,3,4}, {1,2,3,5},
    # {4,6,7,8} and {5,6,7,8} against the rest are as far apart
    assert permutation_p([1, 2, 3, 4], [5, 6, 7, 8]) == 4 / 70
    assert permutation_p([5, 5, 5], [5, 5, 5]) == 1.0


def run(kind: str, round_no: int, p99: float) -> LeaseRun:
    return LeaseRun(kind, round_no, 1000.0, 1.0, p99, 0, 20.0, 13.0, 7.0)


def test_queued_rounds_inside_the_idle_noise_are_not_a_move() -> None:
    idle = [14.0, 17.5, 12.8, 17.6, 14.3, 20.1, 18.0, 17.0]
    queued = [15.6, 12.3, 17.4, 12.8, 23.1, 18.0, 19.3, 16.0]
    lines = verdict(
        [run("idle", i, v) for i, v in enumerate(idle)]
        + [run("queued", i, v) for i, v in enumerate(queued)]
    )
    assert "within the idle rounds' own noise" in lines[-1]


def test_queued_rounds_all_slower_are_a_move() -> None:
    idle = [14.0, 14.5, 15.0, 15.5, 14.2, 14.8, 15.2, 14.6]
    queued = [v * 1.3 for v in idle]
    lines = verdict(
        [run("idle", i, v) for i, v in enumerate(idle)]
        + [run("queued", i, v) for i, v in enumerate(queued)]
    )
    assert "moved beyond noise" in lines[-1]
    assert "ratio of medians 1.30" in lines[0]
