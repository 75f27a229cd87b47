"""GA4: a `phone_call` event per call through the Measurement Protocol, so the visit's source
gets the call as a conversion in Google Analytics (and in Google Ads, through the link).

The event joins the visitor's GA user by the client id the widget read from the `_ga` cookie;
without one there is nobody to join it to, and it is skipped. The Measurement Protocol takes
events up to 72 h old (timestamp_micros), names up to 40 characters and parameter values up to
100, at most 25 parameters: a call older than that window is skipped, long values are cut.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from attribution.calls import CallStatus
from integrations.delivery import Outgoing, Skip
from pbx.settings import Ga4

EVENT_NAME = "phone_call"
MAX_AGE = 72 * 3600.0
MAX_VALUE = 100


def _text(value: str) -> str:
    return value[:MAX_VALUE]


def event_request(
    ga4: Ga4, call: Mapping[str, Any], client_id: str | None, currency: str, now: float
) -> Outgoing:
    if not client_id:
        raise Skip("no GA client id")
    if now - call["started_at"] > MAX_AGE:
        raise Skip("the call is older than the 72 h GA4 takes")
    params: dict[str, Any] = {
        name: _text(call[name]) for name in ("source", "medium", "campaign") if call[name]
    }
    params["answered"] = 1 if call["status"] == CallStatus.ANSWERED else 0
    params["talk_seconds"] = round(call["talk_seconds"])
    sale_cents = (call["sale_cents"] or 0) + call["crm_sale_cents"]
    if sale_cents > 0:
        params["value"] = sale_cents / 100
        params["currency"] = currency
    body = {
        "client_id": client_id,
        "timestamp_micros": round(call["started_at"] * 1_000_000),
        "events": [{"name": EVENT_NAME, "params": params}],
    }
    return Outgoing(
        url=collect_url(ga4),
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json"},
    )


#: how long a Measurement Protocol post may take
GA4_TIMEOUT = 10.0


def past_its_window(body: bytes, now: float) -> bool:
    """A kept Measurement Protocol body whose event GA4 would drop if sent now: older than
    MAX_AGE by the time the post could arrive. GA4 answers 2xx all the same, so a retry after
    the window (an outage of days, "Retry now" on a failed row) would be "delivered" and lost."""
    started = float(json.loads(body)["timestamp_micros"]) / 1_000_000
    return now + GA4_TIMEOUT - started > MAX_AGE


def collect_url(ga4: Ga4) -> str:
    """The Measurement Protocol endpoint with the stream's id and API secret."""
    query = urlencode({"measurement_id": ga4.measurement_id, "api_secret": ga4.api_secret})
    return f"{ga4.endpoint}?{query}"
