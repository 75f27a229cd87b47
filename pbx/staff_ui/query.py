"""The call log's query string: filters, page, and the same filters for the CSV export.

Dates are days in the configured time zone (what staff mean by "from 1 March"); anything that
does not parse is the user's mistake, answered with a 400 that says which field and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiMapping

from pbx.http import whole_number
from pbx.staff_api import keyword
from pbx.storage.calls import CallFilter

PAGE_SIZE = 50
FIELDS = (
    "from",
    "to",
    "source",
    "medium",
    "campaign",
    "static",
    "status",
    "tag",
    "keyword",
    "caller",
)
STATUSES = {"": None, "answered": True, "missed": False}
MAX_TEXT = 512


@dataclass(frozen=True)
class LogQuery:
    """What the log's filter form sent, as typed (kept for the form and the links)."""

    values: dict[str, str]
    where: CallFilter
    page: int

    def link(self, **changes: Any) -> str:
        """This query string with some fields changed (pagination, CSV, one-click filters)."""
        params = {**self.values, **{k: str(v) for k, v in changes.items()}}
        return urlencode({k: v for k, v in params.items() if v and (k, v) != ("page", "1")})

    @property
    def filtered(self) -> bool:
        return any(self.values.get(name) for name in FIELDS)


def _day(value: str, name: str, zone: ZoneInfo) -> float | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name}: expected a date like 2024-03-01") from None
    return datetime.combine(day, time(), zone).timestamp()


#: the fields a report's row links with its key, which may begin or end with a space (a pasted
#: `utm_campaign=Spring%20Sale%20`, or a long value cut to KEY_MAX characters just after one)
KEY_FIELDS = frozenset({"source", "medium", "campaign", "static"})


def _field(name: str, value: str) -> str:
    """A field without the spaces around it, but a key as it is (spaces alone are none)."""
    return value if name in KEY_FIELDS and value.strip() else value.strip()


def parse_log_query(query: MultiMapping[str], zone: ZoneInfo) -> LogQuery:
    values = {name: _field(name, query.get(name, "")) for name in (*FIELDS, "page")}
    for name, value in values.items():
        if len(value) > MAX_TEXT:
            raise web.HTTPBadRequest(reason=f"{name}: at most {MAX_TEXT} characters")
    page = whole_number(values["page"] or "1", "page", 1, 100_000)
    if values["status"] not in STATUSES:
        raise web.HTTPBadRequest(reason="status: expected answered or missed")
    until = _day(values["to"], "to", zone)
    where = CallFilter(
        since=_day(values["from"], "from", zone),
        until=until + timedelta(days=1).total_seconds() if until is not None else None,
        source=values["source"] or None,
        medium=values["medium"] or None,
        campaign=values["campaign"] or None,
        static_source=values["static"] or None,
        answered=STATUSES[values["status"]],
        tag=values["tag"] or None,
        keyword=keyword(values["keyword"]),
        caller=re.sub(r"[^0-9]", "", values["caller"]) or None,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    return LogQuery(values, where, page)
