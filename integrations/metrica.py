"""Yandex Metrica offline calls, in the CSV its upload takes (management API `upload_calls`,
or the counter's Conversions page).

    ClientId,DateTime,StaticCall,Price,Currency,PhoneNumber,TalkDuration,HoldDuration,...
    1700000000123456789,1795000000,0,,,+74990000001,95,12,0,lead,1,https://shop.example/,...

An upload names its visitors one way (its `client_id_type`), so a file has one id column: the
ClientID (the `_ym_uid` cookie the widget read) or the Yandex Direct click id (Yclid: the calls
from a Direct click whose visitor Metrica did not know yet); calls without that id are left out
(counted). DateTime is Unix time (UTC); PhoneNumber the number shown and dialled (the tracking
number, as Metrica's URL column is the page that showed it); HoldDuration the time it rang;
Price the call's sale, if any. Metrica links a call only to a visit at most 21 days before the
upload, so older calls are left out (counted).
"""

from __future__ import annotations

from collections.abc import Iterable

from attribution.money import cents_text
from integrations.conversions import ConversionCall, Export

CLIENT_ID, YCLID = "ClientId", "Yclid"
#: after the id column
COLUMNS = [
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
NO_ID = {CLIENT_ID: "without a Metrica ClientID", YCLID: "without a yclid"}


def export(
    calls: Iterable[ConversionCall],
    *,
    now: float,
    currency: str,
    public_url: str | None,
    by: str = CLIENT_ID,
) -> Export:
    """The upload file of `calls` as of `now`, its visitors named `by` (CLIENT_ID or YCLID);
    with `public_url`, each row links to the call's page (CallTrackerURL)."""
    out = Export([[by, *COLUMNS]])
    for call in calls:
        visitor = call.ym_client_id if by == CLIENT_ID else call.click_ids.get("yclid")
        if not visitor:
            out.left_out[NO_ID[by]] += 1
            continue
        if call.started_at < now - UPLOAD_WINDOW:
            out.left_out[TOO_OLD] += 1
            continue
        sale = cents_text(call.sale_cents) if call.sale_cents else ""
        out.lines.append(
            [
                str(visitor),
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
