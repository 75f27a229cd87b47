"""Google Ads offline click conversions, in the columns of Google's upload template.

    Parameters:TimeZone=Europe/Moscow
    Google Click ID,GBRAID,WBRAID,Conversion Name,Conversion Time,Conversion Value,Conversion
    Currency (one line)
    CjwKCA...,,,Phone call,2026-11-30 14:05:07+0300,1500.00,RUB

A row is a call that counts (`google_ads.calls`) and came from a visit with a Google click id:
exactly one of gclid, gbraid (app) or wbraid (iOS web) per row, the first the visit has in that
order. Times are local to the zone of the first line (ui.timezone), each with its offset from
UTC (the template's `yyyy-MM-dd HH:mm:ss+z`, which Google reads before the Parameters line): in
the hour a clock is set back, a local time alone names two instants. Calls that count but have
no Google click id cannot be credited to a click and are left out, counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from attribution.money import cents_text
from integrations.conversions import ConversionCall, Export

HEADER = [
    "Google Click ID",
    "GBRAID",
    "WBRAID",
    "Conversion Name",
    "Conversion Time",
    "Conversion Value",
    "Conversion Currency",
]
CLICK_IDS = ("gclid", "gbraid", "wbraid")  # the column order of HEADER
NO_CLICK_ID = "without a Google click id (gclid, gbraid, wbraid)"


class Counted(StrEnum):
    """Which calls are conversions."""

    LEADS = "leads"  # by the reports' lead rule (`leads:` in the config)
    ANSWERED = "answered"
    ALL = "all"


def _counts(call: ConversionCall, counted: Counted) -> bool:
    if counted is Counted.LEADS:
        return call.lead
    return call.answered or counted is Counted.ALL


def export(
    calls: Iterable[ConversionCall],
    *,
    conversion_name: str,
    counted: Counted,
    default_value_cents: int | None,
    currency: str,
    timezone: str,
) -> Export:
    """The upload file of `calls`; a call's value is its sale, else `default_value_cents`
    (None: no value, and no currency)."""
    zone = ZoneInfo(timezone)
    out = Export([[f"Parameters:TimeZone={timezone}"], list(HEADER)])
    for call in calls:
        if not _counts(call, counted):
            out.left_out[f"not counted (google_ads.calls: {counted})"] += 1
            continue
        kind = next((k for k in CLICK_IDS if call.click_ids.get(k)), None)
        if kind is None:
            out.left_out[NO_CLICK_ID] += 1
            continue
        cents = call.sale_cents or default_value_cents
        out.lines.append(
            [
                *(call.click_ids[k] if k == kind else "" for k in CLICK_IDS),
                conversion_name,
                datetime.fromtimestamp(call.started_at, zone).strftime("%Y-%m-%d %H:%M:%S%z"),
                cents_text(cents) if cents is not None else "",
                currency if cents is not None else "",
            ]
        )
        out.rows += 1
    return out
