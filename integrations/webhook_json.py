"""`format: json`: calltrack's own webhook body, the call as the staff API shows it and what a
CRM wants beside it (how it was attributed, a recording link it can play, the journey in a few
numbers, the sale). Signed by the worker; built here from rows storage read, without I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from attribution.journey import Journey
from attribution.money import cents_text
from integrations.delivery import PendingEvent


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts is not None else None


def _channel(source: str | None, medium: str | None, campaign: str | None) -> dict[str, Any]:
    return {"source": source, "medium": medium, "campaign": campaign}


def attribution(call: Mapping[str, Any]) -> dict[str, Any]:
    """How the call was matched (session, static, fallback, probable, unknown) and to what."""
    first = call["first_source"] is not None
    return {
        "method": call["attribution"],
        "site": call["site"],
        "pool": call["pool"],
        **_channel(call["source"], call["medium"], call["campaign"]),
        "term": call["term"],
        "content": call["content"],
        "click_ids": call["click_ids"],
        "landing_page": call["landing_url"],
        "referrer": call["referrer"],
        "visit_number": call["visit_number"],
        "pages_viewed": call["pages_viewed"],
        "first_touch": _channel(call["first_source"], call["first_medium"], call["first_campaign"])
        if first
        else None,
    }


def journey_summary(journey: Journey | None) -> dict[str, Any] | None:
    """The journey in the numbers a CRM's lead card shows; None for a caller without visits
    (a static number's call, an unattributed one)."""
    if journey is None or not journey.visits:
        return None
    first, last = journey.visits[0], journey.visits[-1]
    return {
        "visits": journey.visits_total,
        "first_visit_at": _iso(journey.first_visit_at),
        "days_since_first_visit": journey.days_since_first_visit,
        "first_channel": _channel(first.source, first.medium, first.campaign),
        "last_channel": _channel(last.source, last.medium, last.campaign),
        "channels_back": list(journey.channels_back),
        "earlier_calls": len(journey.earlier_calls),
    }


def sale_json(sale: Mapping[str, Any], currency: str) -> dict[str, Any]:
    return {
        "reference": sale["reference"],
        "amount": cents_text(sale["amount_cents"]),
        "currency": currency,
        "caller": sale["caller"],
        "at": _iso(sale["at"]),
    }


def webhook_body(
    event: PendingEvent,
    call: Mapping[str, Any],
    recording_url: str | None,
    journey: Journey | None,
    sale: Mapping[str, Any] | None,
) -> bytes:
    """The body for `event`: `call` as staff_api.call_json shows it, `sale` as sale_json. The
    call's own `recording_url` is the staff route (it needs a login): a receiver gets the
    signed link in its place, and at the top."""
    body: dict[str, Any] = {
        "event": str(event.event),
        "event_id": event.event_id,
        "created_at": _iso(event.created_at),
        "call": {**call, "recording_url": recording_url} if "recording_url" in call else dict(call),
        "attribution": attribution(call),
        "recording_url": recording_url,
        "journey": journey_summary(journey),
    }
    if sale is not None:
        body["sale"] = dict(sale)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
