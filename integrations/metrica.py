"""Yandex Metrica offline calls, in the CSV its upload takes (management API `upload_calls`,
or the counter's Conversions page).

    ClientId,Yclid,DateTime,StaticCall,Price,Currency,PhoneNumber,TalkDuration,HoldDuration,...
    1700000000123456789,,1795000000,0,,,+74990000001,95,12,0,lead,1,https://shop.example/,...

A row is a call from a visit Metrica knows: its ClientID (the `_ym_uid` cookie the widget read)
or, without one, its Yandex Direct click id (yclid); one of the two per row. DateTime is Unix
time (UTC); HoldDuration the time it rang; Price the call's sale, if any. Metrica links a call
only to a visit at most 21 days before the upload, so older calls are left out (counted), as
are calls with neither id.
"""

from __future__ import annotations

from collections.abc import Iterable

from attribution.money import cents_text
from integrations.conversions import ConversionCall, Export

HEADER = [
    "ClientId",
    "Yclid",
    "DateTime",
    "StaticCall",
    "Price",
    "Currency",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
    "CallTrackerURL",
]
UPLOAD_WINDOW = 21 * 86400.0
TOO_OLD = "older than Metrica's 21-day upload window"
NO_ID = "without a Metrica ClientID or yclid"


def export(
    calls: Iterable[ConversionCall], *, now: float, currency: str, public_url: str | None
) -> Export:
    """The upload file of `calls` as of `now`; with `public_url`, each row links to the call's
    page (CallTrackerURL)."""
    out = Export([list(HEADER)])
    for call in calls:
        yclid = call.click_ids.get("yclid")
        if not (call.ym_client_id or yclid):
            out.left_out[NO_ID] += 1
            continue
        if call.started_at < now - UPLOAD_WINDOW:
            out.left_out[TOO_OLD] += 1
            continue
        sale = cents_text(call.sale_cents) if call.sale_cents else ""
        out.lines.append(
            [
                call.ym_client_id or "",
                "" if call.ym_client_id else str(yclid),
                str(int(call.started_at)),
                "1" if call.static else "0",
                sale,
                currency if sale else "",
                call.did,
                str(round(call.talk_seconds)),
                str(round(call.ring_seconds)),
                "0" if call.answered else "1",
                ", ".join(call.tags),
                "1" if call.first_time else "0",
                call.landing_url or "",
                f"{public_url.rstrip('/')}/calls/{call.id}" if public_url else "",
            ]
        )
        out.rows += 1
    return out
