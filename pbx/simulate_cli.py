"""`calltrack simulate`: how many calls pools of several sizes would credit rightly, for a
simulated site's traffic (attribution/simulation.py), under the project's allocator and a naive
one. Needs no config or database: it answers "how many numbers?" before an install has traffic.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from attribution.allocation import ALLOCATORS
from attribution.leasing import LeasePolicy
from attribution.simulation import RELATIVE_SIZES, Model, Outcome, Simulation, rules_of_thumb

#: what one run may make this process compute: visits in all (a week of 2000 a day takes
#: about a second per 16 pool runs)
MAX_VISITS = 2_000_000
MAX_SIZES = 20
MAX_RELATIVE = 10.0


def add_commands(commands: Any) -> None:
    """The `simulate` command, on calltrack's subcommand parser."""
    sim = commands.add_parser(
        "simulate", help="calls credited right/wrong/none per pool size, on simulated traffic"
    )
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--days", type=_bounded(int, 1, 366), default=7)
    sim.add_argument("--visits-per-day", type=_bounded(int, 1, MAX_VISITS), default=2000)
    sim.add_argument(
        "--freeze", type=_bounded(float, 0.1, 24 * 60), default=15.0, help="minutes held after"
    )
    sim.add_argument("--call-share", type=_bounded(float, 0.0, 1.0), default=Model.call_share)
    sim.add_argument(
        "--sizes",
        type=_sizes,
        default=RELATIVE_SIZES,
        metavar="X,X,...",
        help="pool sizes relative to the theoretical minimum (default %(default)s)",
    )
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(run=cmd_simulate)


def _bounded(kind: type[float], low: float, high: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {'whole ' if kind is int else ''}number"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


def _sizes(text: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a comma list of numbers, e.g. 0.5,1,1.1"
        ) from None
    if len(sizes) > MAX_SIZES or not all(0 < s <= MAX_RELATIVE for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: at most {MAX_SIZES} sizes, each above 0 and at most {MAX_RELATIVE:g}"
        )
    return sizes


def outcome_row(outcome: Outcome, relative: float | None) -> dict[str, Any]:
    """One pool size's figures as `--json` gives them (bench/simulate.py tabulates these)."""
    calls = outcome.calls or 1
    return {
        "allocator": outcome.allocator,
        "relative": relative,
        "size": outcome.size,
        "visits": outcome.visits,
        "visits_not_tracked": outcome.not_tracked,
        "calls": outcome.calls,
        "right": outcome.right,
        "wrong": outcome.wrong,
        "none": outcome.none,
        "right_share": outcome.right / calls,
        "wrong_share": outcome.wrong / calls,
        "none_share": outcome.none / calls,
    }


def simulate(model: Model, freeze_minutes: float, sizes: tuple[float, ...]) -> dict[str, Any]:
    sim = Simulation(model, LeasePolicy(freeze_time=freeze_minutes * 60))
    results = [
        outcome_row(sim.run(sim.size(relative), allocator), relative)
        for allocator in ALLOCATORS
        for relative in sizes
    ]
    return {
        "seed": model.seed,
        "days": model.days,
        "visits_per_day": model.visits_per_day,
        "freeze_minutes": freeze_minutes,
        "call_share": model.call_share,
        "visits": sim.traffic.visits,
        "calls": len(sim.traffic.calls),
        "minimum": sim.minimum,
        "calls_in_freeze": sim.in_freeze,
        "rules_of_thumb": rules_of_thumb(sim.traffic, model.days, freeze_minutes * 60),
        "results": results,
    }


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.days * args.visits_per_day > MAX_VISITS:
        print(
            f"calltrack simulate: --days × --visits-per-day is at most {MAX_VISITS}",
            file=sys.stderr,
        )
        return 2
    model = Model(
        seed=args.seed,
        days=args.days,
        visits_per_day=args.visits_per_day,
        call_share=args.call_share,
    )
    report = simulate(model, args.freeze, args.sizes)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    calls = report["calls"] or 1
    print(
        f"{report['visits']} visits, {report['calls']} calls over {model.days} days "
        f"(seed {model.seed}, freeze {args.freeze:g} min)"
    )
    print(
        f"theoretical minimum pool: {report['minimum']} numbers; calls within the freeze time "
        f"(the most any pool credits rightly): {report['calls_in_freeze']} "
        f"({report['calls_in_freeze'] / calls:.1%})"
    )
    print(
        f"{'allocator':<13} {'size':>5} {'numbers':>7} {'untracked':>9} {'right':>7} "
        f"{'wrong':>7} {'none':>7}"
    )
    for row in report["results"]:
        print(
            f"{row['allocator']:<13} {row['relative']:>4g}x {row['size']:>7} "
            f"{row['visits_not_tracked']:>9} {row['right_share']:>7.1%} "
            f"{row['wrong_share']:>7.1%} {row['none_share']:>7.1%}"
        )
    return 0
