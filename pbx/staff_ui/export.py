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
)
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9][0-9 .,()-]*$")


def cell(value: object) -> str:
    """A cell a spreadsheet shows as text: a leading = + - @ would otherwise run as a formula
    (phone numbers like +7499... and negative numbers stay as they are)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def csv_row(call: dict[str, Any], when: Callable[[float | None], str]) -> list[str]:
    values = {
        **call,
        "started_at": when(call["started_at"]),
        "tags": ", ".join(call["tags"]),
        "sale_amount": f"{call['sale_cents'] / 100:.2f}" if call["sale_cents"] is not None else "",
        "repeat_caller": "yes" if call["repeat_caller"] else "no",
    }
    return [cell(values[column]) for column in COLUMNS]


def csv_text(rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerows(rows)
    return out.getvalue()
