"""Accuracy simulator benchmark (issue 13): how many numbers a site needs, against the rules of
thumb, at three traffic levels, under the project's allocator and a naive one.

For each level (a week of 500, 2000 and 10000 visits a day, seed 1, freeze 15 min, the model's
defaults: attribution/simulation.py) the pool sizes relative to the theoretical minimum and the
sizes the trackers' rules of thumb would buy for the same traffic are run through the
simulator; the table goes to bench/results/simulate.md and stdout.

Usage:
  .venv/bin/python -m bench.simulate [--out bench/results/simulate.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from attribution.allocation import ALLOCATORS
from attribution.leasing import LeasePolicy
from attribution.simulation import RELATIVE_SIZES, Model, Simulation, rules_of_thumb
from pbx.simulate_cli import outcome_row

LEVELS = (500, 2000, 10000)
FREEZE_MINUTES = 15.0
RULE_NAMES = {
    "per_20_daily_visitors": "rule: 1 per 20 daily visitors",
    "peak_hour_x_hold_time": "rule: peak hour × (visit + freeze)",
}


def level(visits_per_day: int) -> list[str]:
    """The markdown section of one traffic level."""
    started = time.monotonic()
    sim = Simulation(Model(visits_per_day=visits_per_day), LeasePolicy(FREEZE_MINUTES * 60))
    traffic = sim.traffic
    rules = rules_of_thumb(traffic, sim.model.days, FREEZE_MINUTES * 60)
    sizes = [(f"{r:g}× minimum", sim.size(r)) for r in RELATIVE_SIZES]
    sizes += [(RULE_NAMES[name], size) for name, size in rules.items()]
    sizes.sort(key=lambda s: s[1])
    calls = len(traffic.calls) or 1
    lines = [
        f"### {visits_per_day} visits/day",
        "",
        f"{traffic.visits} visits and {len(traffic.calls)} calls in {sim.model.days} days; "
        f"peak hour {traffic.peak_hour_visits} visits, average visit "
        f"{traffic.mean_visit / 60:.1f} min; theoretical minimum pool **{sim.minimum}**; "
        f"calls within the freeze time {sim.in_freeze} ({sim.in_freeze / calls:.1%}, the most "
        "any pool credits rightly).",
        "",
        "| pool | numbers | visits not tracked | right (free the longest) | wrong | none "
        "| right (random free) | wrong | none |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, size in sizes:
        rows = [outcome_row(sim.run(size, allocator), None) for allocator in ALLOCATORS]
        untracked = rows[0]["visits_not_tracked"] / rows[0]["visits"]
        shares = " | ".join(
            f"{row['right_share']:.1%} | {row['wrong_share']:.1%} | {row['none_share']:.1%}"
            for row in rows
        )
        lines.append(f"| {label} | {size} | {untracked:.1%} | {shares} |")
    lines += ["", f"({time.monotonic() - started:.1f} s)", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/simulate.md")
    args = parser.parse_args()
    lines = [
        "# Accuracy simulator (`bench/simulate.py`, issue 13)",
        "",
        f"A week of simulated traffic per level, seed 1, freeze {FREEZE_MINUTES:g} min, the "
        "model of attribution/simulation.py. Shares of calls: right (credited to the caller's "
        "visit), wrong (to another visit), none (the fallback, or a number nobody held).",
        "",
    ]
    for visits_per_day in LEVELS:
        lines += level(visits_per_day)
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
