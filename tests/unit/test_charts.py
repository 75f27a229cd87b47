"""The reports page's chart geometry (pbx/staff_ui/charts.py) and its SVG template."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from pbx.staff_ui import charts, templates
from tests.helpers import make_settings

SVG = "{http://www.w3.org/2000/svg}"


def test_the_top_keys_are_stacked_by_name_and_the_rest_is_one_other_block() -> None:
    series = [
        ("mon", "a", 9),
        ("mon", "b", 8),
        ("tue", "c", 7),
        ("tue", "d", 6),
        ("mon", "e", 5),
        ("tue", "f", 2),
        ("tue", "g", 1),
        ("wed", "a", 1),
    ]
    keys, counts = charts.stack(series, ["mon", "tue", "wed", "thu"])
    assert keys == ["a", "b", "c", "d", "e", "(other)"]  # a has 9 + 1
    assert counts == [[9, 8, 0, 0, 5, 0], [0, 0, 7, 6, 0, 3], [1, 0, 0, 0, 0, 0], [0] * 6]
    assert charts.stack([("mon", "a", 2)], ["mon"]) == (["a"], [[2]])  # no empty (other)


def test_stack_heights_add_up_to_each_days_calls() -> None:
    totals = {"1 Jan": 3, "2 Jan": 0, "3 Jan": 17, "4 Jan": 8}
    series = [
        ("1 Jan", "google", 2),
        ("1 Jan", "yandex", 1),
        ("3 Jan", "google", 10),
        ("3 Jan", "(direct)", 4),
        ("3 Jan", "yandex", 3),
        ("4 Jan", "(direct)", 8),
    ]
    keys, counts = charts.stack(series, list(totals))
    chart = charts.stacked_columns("Calls per day", list(totals), keys, counts)
    heights: dict[float, float] = defaultdict(float)
    tops: dict[float, float] = {}
    for rect in chart.rects:
        heights[rect.x] += rect.height
        tops[rect.x] = min(tops.get(rect.x, rect.y + rect.height), rect.y)
    columns = sorted(heights)
    assert len(columns) == 3  # the day without calls has no shapes
    per_call = heights[columns[1]] / 17
    for x, day in zip(columns, ("1 Jan", "3 Jan", "4 Jan"), strict=True):
        assert abs(heights[x] - totals[day] * per_call) < 0.2
    # the stacks stand on the 0 line; the axis's top step (20) is above the tallest, 17
    zero, top = chart.rules[0].y1, chart.rules[-1].y1
    for x in columns:
        assert abs(tops[x] + heights[x] - zero) < 0.2
    assert abs((zero - top) - 20 * per_call) < 0.5
    assert [lab.text for lab in chart.labels if lab.anchor == "end"] == ["0", "5", "10", "15", "20"]
    assert {s.name for s in chart.legend} == {"google", "(direct)", "yandex"}
    assert len({s.colour for s in chart.legend}) == 3
    assert "3 Jan, google: 10" in {r.title for r in chart.rects}


def test_no_calls_is_said_not_drawn() -> None:
    chart = charts.stacked_columns("Calls per day", ["1 Jan", "2 Jan"], [], [[], []])
    assert chart.empty == "No calls in this range" and chart.rects == [] and chart.legend == []
    bars = charts.grouped_bars("By source", [], [charts.Measure("Calls", [], [])])
    assert bars.empty and bars.rects == []


def test_ticks_are_round_steps_covering_the_top() -> None:
    assert charts.ticks(17) == [0, 5, 10, 15, 20]
    assert charts.ticks(3) == [0, 1, 2, 3]
    assert charts.ticks(1) == [0, 1]
    assert charts.ticks(250) == [0, 100, 200, 300]
    assert charts.ticks(0) == [0.0, 1.0]


def test_bars_scale_each_measure_to_its_largest_value() -> None:
    chart = charts.grouped_bars(
        "Calls and revenue",
        ["google", "a very long campaign name that will not fit"],
        [
            charts.Measure("Calls", [4, 1], ["4", "1"]),
            charts.Measure("Revenue", [0, 150000], ["0.00", "1500.00"]),
        ],
    )
    widths = {r.title: r.width for r in chart.rects}
    full = widths["google, Calls: 4"]
    assert widths["a very long campaign name that will not fit, Revenue: 1500.00"] == full
    assert abs(widths["a very long campaign name that will not fit, Calls: 1"] - full / 4) < 0.2
    assert widths["google, Revenue: 0.00"] == 0
    names = [lab.text for lab in chart.labels if lab.x == 0]
    assert names == ["google", "a very long campaign na…"]  # cut; the full name is the tooltip
    assert all(r.x + r.width <= charts.WIDTH for r in chart.rects)


def test_the_svg_is_well_formed_accessible_and_escaped(tmp_path: Path) -> None:
    env = templates(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    keys, counts = charts.stack([("1 Jan", "<b>&co", 2)], ["1 Jan"])
    chart = charts.stacked_columns("Calls per day", ["1 Jan"], keys, counts)
    html = env.from_string(
        '{% from "_chart.html" import chart as draw %}{{ draw(c, "c1") }}'
    ).render(c=chart)
    figure = ET.fromstring(html.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    svg = figure.find("svg")
    assert svg is not None and svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "c1-t c1-d"
    assert svg.findtext("title") == "Calls per day"
    assert [r.findtext("title") for r in svg.iter("rect")] == ["1 Jan, <b>&co: 2"]
    assert "style" not in html  # the CSP allows no inline styles: colours are fill= attributes
    legend = figure.find("ul")
    assert legend is not None and "<b>&co" in "".join(legend.itertext())
