"""The filtered call log as CSV, for spreadsheets and ROI sums."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from typing import Any

COLUMNS = (
    "id",
    "started_at",
    "caller",
    "did",
    "status",
    "ring_seconds",
    "talk_seconds",
    "attribution",
    "source",
    "medium",
    "campaign",
    "term",
    "content",
    "landing_url",
    "referrer",
    "visit_number",
    "pages_viewed",
    "first_source",
    "first_medium",
    "repeat_caller",
    "tags",
    "score",
    "sale_amount",
    "notes",
    # the CRM's deals credited to the call (POST /api/v1/sales): reports count them beside
    # sale_amount, so a spreadsheet's ROI sum needs them too
    "crm_sales",
    "crm_sale_amount",
)
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9][0-9 .,()-]*$")
# what a spreadsheet may split a cell on when it guesses the separator by locale or ignores quotes
_PIECE = re.compile(r"(^|[;,\t\r\n])([^;,\t\r\n]*)")


def _defused(match: re.Match[str]) -> str:
    separator, piece = match.groups()
    start = piece.lstrip(' "')
    if start[:1] in ("=", "+", "-", "@") and not _PLAIN_NUMBER.match(start):
        return f"{separator}'{piece}"
    return match.group(0)


def cell(value: object) -> str:
    """A cell a spreadsheet shows as text: a leading = + - @ would otherwise run as a formula,
    at the start and after every `;`, `,`, tab or line break a spreadsheet may split the cell on
    (phone numbers like +7499... and negative numbers stay as they are)."""
    return _PIECE.sub(_defused, "" if value is None else str(value))


def amount(cents: int | None) -> str:
    """Whole cents as the decimal a person types: 1500.00 (the pages and the CSV alike)."""
    return "" if cents is None else f"{cents // 100}.{cents % 100:02d}"


def csv_row(call: dict[str, Any], when: Callable[[float | None], str]) -> list[str]:
    values = {
        **call,
        "started_at": when(call["started_at"]),
        "tags": ", ".join(call["tags"]),
        "sale_amount": amount(call["sale_cents"]),
        "crm_sale_amount": amount(call["crm_sale_cents"]),
        "repeat_caller": "yes" if call["repeat_caller"] else "no",
    }
    return [cell(values[column]) for column in COLUMNS]


def csv_text(rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerows(rows)
    return out.getvalue()


def upload_text(lines: Iterable[list[str]]) -> str:
    """An ad platform's upload file (the admin download and `calltrack export` alike): every
    cell through `cell`, quoted only where CSV needs it, as the platforms' templates are."""
    out = io.StringIO()
    csv.writer(out).writerows([cell(value) for value in line] for line in lines)
    return out.getvalue()
