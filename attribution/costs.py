"""Ad spend: reading the ad platforms' cost exports, and spreading fixed monthly costs per day.

A cost file has one row per day and channel: `date, source, medium, campaign, cost` (the header
row names the columns, in any order). The ad platforms' own exports load with a preset or a
column map instead of being edited by hand:

- Google Ads (`google-ads`): a report with the columns Day, Campaign, Cost, downloaded as
  ".csv" (UTF-8, commas) or "Excel .csv" (UTF-16LE, tabs); one or two title lines (the report's
  name, its date range) stand above the header and are skipped; "Total: ..." rows are skipped.
  Costs are written with a decimal point and may have thousands separators ("1,234.56").
- Yandex Direct (`yandex-direct`): a Report Wizard ("Мастер отчётов") export with the columns
  Дата, Кампания, Расход (руб.) (or "Расход, ₽", "Расход"), dates as DD.MM.YYYY, semicolons,
  an "Итого" row; or a Reports API TSV (Date, CampaignName, Cost, with returnMoneyInMicros:
  false), whose title line is skipped and whose closing "Total rows: N" line is skipped too.

Rows whose date is not a date but which start a cell with "Total" or "Итого" are the exports'
totals and are skipped (never counted twice). Rows of the same day, source, medium and campaign
in one file are added up: an export split by device or network has several per campaign and
day. A file with any bad row is refused whole: every problem is listed as FILE:LINE: what was
expected, and nothing is imported.

Static numbers' `monthly_cost` is spread over the days of each month here, to the cent.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from attribution.money import MoneyError, cents_text, to_cents
from attribution.reports import day_of, local_day
from attribution.traffic import channel_name

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_PROBLEMS = 20  # listed; the rest are counted
MAX_NAME = 512  # the costs table's source/medium/campaign columns
HEADER_SEARCH_ROWS = 30  # title lines an export may have above its header
ROLES = ("date", "source", "medium", "campaign", "cost")
DELIMITERS = ",;\t"
_TOTALS = ("total", "итого")


class CostFileError(ValueError):
    """What is wrong with a cost file, each problem as `FILE:LINE: what was expected`."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.text())

    def text(self) -> str:
        shown = self.problems[:MAX_PROBLEMS]
        more = len(self.problems) - len(shown)
        return "\n".join([*shown, *([f"and {more} more"] if more else [])])


@dataclass(frozen=True)
class Layout:
    """Where each field of a cost row comes from: the header names accepted for each role
    (compared case-insensitively), constants for source and medium, how costs are written."""

    columns: Mapping[str, tuple[str, ...]]
    source: str | None = None  # used when the file has no source column
    medium: str | None = None
    forced: frozenset[str] = frozenset()  # roles whose constant wins over a column

    def constant(self, role: str) -> str:
        return {"source": self.source, "medium": self.medium}.get(role) or ""


_PLAIN = {role: (role,) for role in ROLES}

PRESETS: dict[str, Layout] = {
    "google-ads": Layout(
        columns={
            "date": ("Day", "Date", "День"),
            "campaign": ("Campaign", "Campaign name", "Кампания"),
            "cost": ("Cost", "Стоимость"),
        },
        source="google",
        medium="cpc",
    ),
    "yandex-direct": Layout(
        columns={
            "date": ("Дата", "Date"),
            "campaign": ("Кампания", "Название кампании", "CampaignName"),
            "cost": ("Расход (руб.)", "Расход, ₽", "Расход (₽)", "Расход", "Cost"),
        },
        source="yandex",
        medium="cpc",
    ),
}


def layout_for(
    preset: str | None = None,
    column_map: str | None = None,
    source: str | None = None,
    medium: str | None = None,
) -> Layout:
    """The layout of a preset (default: the plain `date, source, medium, campaign, cost`),
    with `--map role=Header,...` naming other headers and `--source`/`--medium` constants.
    A constant given here wins over a column of that name; a preset's only fills a gap."""
    if preset is not None and preset not in PRESETS:
        raise CostFileError([f"--preset: expected one of {', '.join(PRESETS)}, got {preset!r}"])
    base = PRESETS[preset] if preset else Layout(columns=_PLAIN)
    columns = dict(base.columns)
    columns.update({role: (header,) for role, header in parse_map(column_map or "").items()})
    forced = {role for role, value in (("source", source), ("medium", medium)) if value}
    return Layout(
        columns=columns,
        source=source or base.source,
        medium=medium or base.medium,
        forced=frozenset(forced),
    )


def parse_map(text: str) -> dict[str, str]:
    """`cost=Cost,date=Day` as {role: header}; a header cannot itself hold a comma."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        role, sep, header = (s.strip() for s in item.partition("="))
        if not sep or not header or role not in ROLES:
            raise CostFileError(
                [f"--map: expected role=Header with a role among {', '.join(ROLES)}, got {item!r}"]
            )
        mapping[role] = header
    return mapping


@dataclass(frozen=True)
class CostRow:
    day: int  # yyyymmdd
    source: str
    medium: str
    campaign: str
    cost_cents: int

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.day, self.source, self.medium, self.campaign)


@dataclass(frozen=True)
class CostFile:
    """A cost file read whole: its rows (duplicates added up), sorted by day and channel."""

    file: str
    rows: tuple[CostRow, ...]
    read: int = 0  # data rows in the file, before duplicates were added up
    totals_skipped: int = 0
    sources: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(sorted({r.source for r in self.rows})))

    @property
    def since_day(self) -> int | None:
        return self.rows[0].day if self.rows else None

    @property
    def until_day(self) -> int | None:
        return max(r.day for r in self.rows) if self.rows else None

    @property
    def days(self) -> int:
        return len({r.day for r in self.rows})

    @property
    def total_cents(self) -> int:
        return sum(r.cost_cents for r in self.rows)

    def summary(self, currency: str) -> str:
        """One line: rows, days, sources, total."""
        if not self.rows:
            return f"{self.file}: no cost rows"
        span = f"{day_of(self.since_day or 0)}..{day_of(self.until_day or 0)}"
        return (
            f"{self.file}: {len(self.rows)} rows, {self.days} days ({span}),"
            f" sources {', '.join(self.sources)}, total {cents_text(self.total_cents)} {currency}"
        )


def decode(data: bytes, file: str) -> str:
    """The text of a file in UTF-8 (with or without a BOM) or UTF-16 (Google Ads' "Excel .csv"
    is UTF-16LE with a BOM; without one, NUL bytes in every other place give it away)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif len(data) >= 2 and data[1:2] == b"\x00" and data[0:1] != b"\x00":
        encoding = "utf-16-le"
    elif len(data) >= 2 and data[0:1] == b"\x00" and data[1:2] != b"\x00":
        encoding = "utf-16-be"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1 if encoding == "utf-8-sig" else 1
        raise CostFileError([f"{file}:{line}: expected UTF-8 or UTF-16 text"]) from None


def _fold(text: str) -> str:
    return " ".join(text.replace("\ufeff", "").split()).casefold()


def _delimiters(text: str) -> list[str]:
    """The sniffed delimiter first, then the others: a title line above the header can
    mislead the sniffer, so each is tried against the header in turn."""
    try:
        sniffed = csv.Sniffer().sniff(text[:65536], delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ","
    return [sniffed, *(d for d in DELIMITERS if d != sniffed)]


def _find_header(text: str, layout: Layout) -> tuple[str, int, dict[str, int], int] | None:
    """(delimiter, line of the header, column index per role, how many cells it has) of the
    first row within HEADER_SEARCH_ROWS that names the date and cost columns, under any
    delimiter."""
    for delimiter in _delimiters(text):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for _ in range(HEADER_SEARCH_ROWS):
            try:
                row = next(reader)
            except (StopIteration, csv.Error):
                break
            found = _roles(row, layout)
            if "date" in found and "cost" in found:
                return delimiter, reader.line_num, found, _width(row)
    return None


def _roles(header: list[str], layout: Layout) -> dict[str, int]:
    names = {_fold(cell): i for i, cell in reversed(list(enumerate(header)))}
    found: dict[str, int] = {}
    for role, accepted in layout.columns.items():
        for name in accepted:
            if _fold(name) in names:
                found[role] = names[_fold(name)]
                break
    return found


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DOTTED = re.compile(r"(\d{2})\.(\d{2})\.(\d{4})")


def parse_day(text: str) -> int | None:
    """yyyymmdd of "2024-03-01" or "01.03.2024" (Yandex's exports); None if not a date."""
    text = text.strip()
    if m := _ISO.fullmatch(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _DOTTED.fullmatch(text):
        day, month, year = int(m[1]), int(m[2]), int(m[3])
    else:
        return None
    try:
        return local_day(date(year, month, day))
    except ValueError:
        return None


def _is_totals(row: list[str], columns: Mapping[str, int]) -> bool:
    """A spreadsheet's totals row: "Total"/"Итого" in its date cell or its first cell (a
    campaign named "Total brand" in a row whose date is mistyped is an error, not totals)."""
    cells = (_cell(row, columns, "date"), row[0] if row else "")
    return any(_fold(cell.strip()).startswith(_TOTALS) for cell in cells)


def _width(row: list[str]) -> int:
    """A row's cells up to its last non-empty one (a spreadsheet pads rows with empty ones)."""
    return max((i + 1 for i, cell in enumerate(row) if cell.strip()), default=0)


def read_costs(data: bytes, file: str, layout: Layout) -> CostFile:
    """The rows of a cost file, or CostFileError listing every bad row (nothing half-read)."""
    if len(data) > MAX_FILE_BYTES:
        raise CostFileError(
            [f"{file}: expected at most {MAX_FILE_BYTES // 2**20} MB; split the file by dates"]
        )
    text = decode(data, file)
    if (nul := text.find("\x00")) >= 0:  # csv reads it as text; no database keeps it in text
        raise CostFileError(
            [
                f"{file}:{text.count(chr(10), 0, nul) + 1}: expected text, found a NUL character"
                " (a spreadsheet's own file rather than CSV? save it as CSV)"
            ]
        )
    found = _find_header(text, layout)
    if found is None:
        wanted = "; ".join(
            f"{role}: {' or '.join(layout.columns[role])}" for role in ("date", "cost")
        )
        raise CostFileError(
            [
                f"{file}:1: expected a header row naming the columns ({wanted}) within the"
                f" first {HEADER_SEARCH_ROWS} lines; use --preset or --map for other names"
            ]
        )
    delimiter, header_line, columns, width = found
    problems = [
        f"{file}:{header_line}: expected a {role} column, or --{role} VALUE"
        for role in ("source", "medium")
        if role not in columns and not layout.constant(role)
    ]
    if problems:  # every row would repeat it
        raise CostFileError(problems)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    sums: dict[tuple[int, str, str, str], int] = {}
    read = totals = 0
    try:
        for row in reader:
            if reader.line_num <= header_line or not any(cell.strip() for cell in row):
                continue
            parsed = _row(row, columns, layout)
            if not isinstance(parsed, str) and _width(row) > width:
                # a cell split in two: "12,50" unquoted, or a campaign "Sale, spring", and the
                # cost column read the wrong half (12.00 imported for 12.50, without a word)
                parsed = (
                    f"expected {width} cells as the header has, got {_width(row)} (an unquoted"
                    f" {delimiter!r} in a cell? quote the cell, or save with another separator)"
                )
            if isinstance(parsed, str):
                if _is_totals(row, columns) and parse_day(_cell(row, columns, "date")) is None:
                    totals += 1
                else:
                    problems.append(f"{file}:{reader.line_num}: {parsed}")
                continue
            read += 1
            if read > MAX_ROWS:
                problems.append(f"{file}:{reader.line_num}: expected at most {MAX_ROWS:,} rows")
                break
            sums[parsed.key] = sums.get(parsed.key, 0) + parsed.cost_cents
    except csv.Error as exc:
        problems.append(f"{file}:{reader.line_num}: expected CSV ({exc})")
    if problems:
        raise CostFileError(problems)
    rows = tuple(CostRow(*key, cents) for key, cents in sorted(sums.items()))
    return CostFile(file, rows, read=read, totals_skipped=totals)


def _cell(row: list[str], columns: Mapping[str, int], role: str) -> str:
    index = columns.get(role)
    return row[index].strip() if index is not None and index < len(row) else ""


def _row(row: list[str], columns: Mapping[str, int], layout: Layout) -> CostRow | str:
    """The row, or what was expected of it."""
    date_text = _cell(row, columns, "date")
    day = parse_day(date_text)
    if day is None:
        return f"date: expected YYYY-MM-DD or DD.MM.YYYY, got {date_text!r}"
    names: dict[str, str] = {}
    for role in ("source", "medium", "campaign"):
        use_column = role in columns and role not in layout.forced
        value = _cell(row, columns, role) if use_column else layout.constant(role)
        if len(value) > MAX_NAME:
            return f"{role}: expected at most {MAX_NAME} characters"
        names[role] = channel_name(value)
    if not names["source"]:
        return "source: expected a name, got an empty cell"
    cost_text = _cell(row, columns, "cost")
    try:
        cents = to_cents(cost_text)
    except MoneyError as exc:
        return f"cost: {exc}"
    return CostRow(day, names["source"], names["medium"], names["campaign"], cents)


# -- fixed monthly costs ---------------------------------------------------------------------


def monthly_spread(monthly_cents: int, year: int, month: int) -> list[int]:
    """Each day's cents of a monthly cost: the days sum to exactly `monthly_cents`, and the
    remainder cents go one each to the month's first days (so no day differs by more than 1)."""
    days = calendar.monthrange(year, month)[1]
    share, remainder = divmod(monthly_cents, days)
    return [share + (1 if i < remainder else 0) for i in range(days)]


def day_share(monthly_cents: int, day: int) -> int:
    """One day's (yyyymmdd) cents of a monthly cost, as `monthly_spread` gives it."""
    when = day_of(day)
    return monthly_spread(monthly_cents, when.year, when.month)[when.day - 1]


@dataclass(frozen=True)
class MonthlyCost:
    """A fixed monthly cost of one channel (a static number's rent)."""

    source: str
    medium: str
    campaign: str
    monthly_cents: int


def days_between(since_day: int, until_day: int) -> Iterator[int]:
    """Each day key from since_day to until_day, both included."""
    day, last = day_of(since_day), day_of(until_day)
    while day <= last:
        yield local_day(day)
        day += timedelta(days=1)


def spread_costs(monthly: Iterable[MonthlyCost], since_day: int, until_day: int) -> list[CostRow]:
    """The daily rows of fixed monthly costs over a date range (zero-cent days left out)."""
    fixed = [m for m in monthly if m.monthly_cents]
    return [
        CostRow(day, m.source, m.medium, m.campaign, cents)
        for day in days_between(since_day, until_day)
        for m in fixed
        if (cents := day_share(m.monthly_cents, day))
    ]
