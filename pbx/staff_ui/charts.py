"""Chart geometry for the reports page: numbers in, SVG shapes out (rendered by _chart.html).

Server-side SVG needs no script and no CDN, and keeps within the pages' CSP: colours are SVG
presentation attributes (fill=), never style=. A chart is drawn on a fixed 400-unit-wide viewBox
that scales to its container, so the same shapes read on a desktop column and a 390 px phone
(where the stylesheet draws the text larger, into the room the layout leaves for it).
Colours are the Okabe-Ito palette, told apart with any kind of colour blindness.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
OTHER_COLOUR = "#9AA1AC"
OTHER = "(other)"
TOP = 5  # keys stacked by name; the rest are one "(other)" block
WIDTH = 400.0
FONT = 13.0  # the text's size in viewBox units (_chart.html)
ROOM = 15.0  # the text height the layout leaves room for: phones draw it larger (ui.css)
MAX_LABEL = 24  # characters of a bar's name before it is cut (the full name is its tooltip)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str  # the tooltip, and what a screen reader reads for the shape


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"  # SVG text-anchor: start | middle | end


@dataclass(frozen=True)
class Rule:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Swatch:
    colour: str
    name: str


@dataclass(frozen=True)
class Chart:
    title: str
    summary: str  # one sentence a screen reader says for the whole chart
    height: float
    width: float = WIDTH
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    legend: list[Swatch] = field(default_factory=list)
    empty: str = ""  # what to say instead of shapes when there is nothing to draw
    font: float = FONT


def _r(value: float) -> float:
    return round(value, 1)


def top_keys(series: Iterable[tuple[str, str, int]], top: int = TOP) -> list[str]:
    """The `top` keys with most calls over all columns (ties by name), most first."""
    totals: dict[str, int] = defaultdict(int)
    for _column, key, count in series:
        totals[key] += count
    ranked = sorted((k for k, n in totals.items() if n > 0), key=lambda k: (-totals[k], k))
    return ranked[:top]


def stack(
    series: Iterable[tuple[str, str, int]], columns: Sequence[str], top: int = TOP
) -> tuple[list[str], list[list[int]]]:
    """The stacked layers, bottom first: the top keys, then (other) if any count is left over;
    and per column the count of each layer. Columns without a count are zeros."""
    series = list(series)
    keys = top_keys(series, top)
    index = {k: i for i, k in enumerate(keys)}
    position = {c: i for i, c in enumerate(columns)}
    counts = [[0] * (len(keys) + 1) for _ in columns]
    for column, key, count in series:
        counts[position[column]][index.get(key, len(keys))] += count
    if any(c[-1] for c in counts):
        return [*keys, OTHER], counts
    return keys, [c[:-1] for c in counts]


def ticks(top: float, count: int = 4, whole: bool = True) -> list[float]:
    """Round steps (1, 2 or 5 × 10^n) from 0 to at least `top`, about `count` of them."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(step, 1)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _colour(key: str, i: int) -> str:
    return OTHER_COLOUR if key == OTHER else PALETTE[i % len(PALETTE)]


def _number(value: float) -> str:
    return f"{value:g}"


def stacked_columns(
    title: str,
    columns: Sequence[str],
    keys: Sequence[str],
    counts: Sequence[Sequence[int]],
    unit: str = "calls",
) -> Chart:
    """A column per period (named as its axis label), its calls stacked by key (bottom = the
    first key)."""
    height, left, right, top, bottom = 240.0, 34.0, 6.0, ROOM + 10, ROOM + 9
    total = sum(map(sum, counts))
    summary = f"{title}: {total} {unit} over {len(columns)} periods"
    legend = [Swatch(_colour(k, i), k) for i, k in enumerate(keys)]
    if total == 0:
        return Chart(title, summary, 120.0, empty=f"No {unit} in this range", legend=[])
    chart = Chart(title, summary, height, legend=legend)
    base, plot_h, plot_w = height - bottom, height - bottom - top, WIDTH - left - right
    steps = ticks(max(map(sum, counts)))
    scale = plot_h / steps[-1]
    for value in steps:
        y = _r(base - value * scale)
        chart.rules.append(Rule(left, y, WIDTH - right, y))
        chart.labels.append(Label(left - 4, _r(y + ROOM / 3), _number(value), "end"))
    chart.labels.append(Label(2, ROOM - 2, unit))  # the axis's unit, above its top step
    slot = plot_w / len(columns)
    width = max(slot * 0.72, 1.0)
    every = math.ceil(len(columns) / 5)  # at most 5 period labels: they must not overlap
    for i, (name, layer_counts) in enumerate(zip(columns, counts, strict=True)):
        x = left + i * slot + (slot - width) / 2
        y = base
        for key, count, swatch in zip(keys, layer_counts, legend, strict=True):
            if count:
                h = count * scale
                y -= h
                chart.rects.append(
                    Rect(_r(x), _r(y), _r(width), _r(h), swatch.colour, f"{name}, {key}: {count}")
                )
        if i % every == 0:
            chart.labels.append(Label(_r(x + width / 2), _r(base + ROOM + 2), name, "middle"))
    return chart


@dataclass(frozen=True)
class Measure:
    """One bar per item: its values, scaled to the largest, and how each is written."""

    name: str
    values: Sequence[float]
    texts: Sequence[str]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def grouped_bars(title: str, items: Sequence[str], measures: Sequence[Measure]) -> Chart:
    """Horizontal bars: per item its name, then a bar per measure with its value written at
    the end. Each measure has its own scale (calls and money do not share an axis)."""
    row_gap, bar_h, name_h, value_w = 10.0, ROOM, ROOM + 3, 84.0
    per_item = name_h + bar_h * len(measures) + row_gap
    legend = [Swatch(PALETTE[i % len(PALETTE)], m.name) for i, m in enumerate(measures)]
    summary = f"{title}: {len(items)} rows"
    if not items or not any(v for m in measures for v in m.values):
        return Chart(title, summary, 120.0, empty="No calls or revenue in this range")
    chart = Chart(title, summary, _r(per_item * len(items) + 4), legend=legend)
    plot_w = WIDTH - value_w
    for i, item in enumerate(items):
        y = i * per_item + ROOM
        chart.labels.append(Label(0, _r(y), _cut(item)))
        y += 5
        for measure, swatch in zip(measures, legend, strict=True):
            biggest = max(measure.values) or 1
            value, text = measure.values[i], measure.texts[i]
            width = _r(plot_w * value / biggest)
            chart.rects.append(
                Rect(0, _r(y), width, bar_h - 2, swatch.colour, f"{item}, {measure.name}: {text}")
            )
            chart.labels.append(Label(_r(width + 4), _r(y + bar_h - 3), text))
            y += bar_h
    return chart


@dataclass(frozen=True)
class Band:
    """Columns up to `last` (inclusive) drawn in one colour, named in the legend."""

    last: int
    colour: str
    name: str


def share_columns(title: str, shares: Sequence[tuple[int, float]], bands: Sequence[Band]) -> Chart:
    """A column per x (e.g. a pool size) of a share from 0 to 100 %, coloured by the band the
    x falls in (the first band whose `last` reaches it; the last band takes the rest)."""
    height, left, right, top, bottom = 240.0, 50.0, 6.0, ROOM + 10, ROOM + 9
    summary = f"{title}: {len(shares)} columns"
    if not shares:
        return Chart(title, summary, 120.0, empty="Nothing to replay in this range")
    used = [b for b in bands if any(x <= b.last for x, _ in shares)] or list(bands[-1:])
    chart = Chart(title, summary, height, legend=[Swatch(b.colour, b.name) for b in used])
    base, plot_h, plot_w = height - bottom, height - bottom - top, WIDTH - left - right
    for value in (0, 25, 50, 75, 100):
        y = _r(base - value / 100 * plot_h)
        chart.rules.append(Rule(left, y, WIDTH - right, y))
        chart.labels.append(Label(left - 4, _r(y + ROOM / 3), f"{value}%", "end"))
    slot = plot_w / len(shares)
    width = max(slot * 0.8, 0.6)
    every = math.ceil(len(shares) / 6)  # at most 6 axis labels, and the last column's
    named = set(range(0, len(shares), every))
    if len(shares) - 1 - max(named) >= every / 2:
        named.add(len(shares) - 1)
    for i, (x_value, share) in enumerate(shares):
        band = next((b for b in bands if x_value <= b.last), bands[-1])
        x = left + i * slot + (slot - width) / 2
        h = share * plot_h
        chart.rects.append(
            Rect(_r(x), _r(base - h), _r(width), _r(h), band.colour, f"{x_value}: {share:.1%}")
        )
        if i in named:
            chart.labels.append(
                Label(_r(x + width / 2), _r(base + ROOM + 2), str(x_value), "middle")
            )
    return chart
