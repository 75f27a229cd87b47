"""`format: bitrix24`: a lead per call in Bitrix24 through its incoming webhook (crm.lead.add).

The admin pastes the webhook URL Bitrix24 shows (https://PORTAL/rest/USER/KEY/) and calltrack
calls its `crm.lead.add.json` with the standard lead fields: TITLE, PHONE, SOURCE_ID "CALL",
SOURCE_DESCRIPTION and UTM_SOURCE / MEDIUM / CAMPAIGN / CONTENT / TERM; COMMENTS carries the
recording link. Only a completed call makes a lead: a changed review or a sale is not a new one.

crm.lead.add is not idempotent: each POST makes a lead. Every lead carries the event's id
(ORIGINATOR_ID "calltrack", ORIGIN_ID the event id), and an attempt after one that may have
reached Bitrix24 first asks crm.lead.list for a lead with that id (`lead_lookup`): a retry after
a lost answer finds the lead the lost answer named instead of making a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from integrations.delivery import Lookup, Outgoing, PendingEvent, Skip
from integrations.events import Event

UTM_FIELDS = ("source", "medium", "campaign", "content", "term")
ORIGINATOR = "calltrack"  # the leads' ORIGINATOR_ID: whose ids their ORIGIN_IDs are


def lead_url(webhook_url: str) -> str:
    """crm.lead.add of the incoming webhook, with or without its trailing slash."""
    return f"{webhook_url.rstrip('/')}/crm.lead.add.json"


def lead_lookup(webhook_url: str, event_id: str) -> Lookup:
    """crm.lead.list of the leads an earlier attempt of the event made."""
    wanted = {"ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": event_id}
    body = {"filter": wanted, "select": ["ID", *wanted]}
    return Lookup(
        f"{webhook_url.rstrip('/')}/crm.lead.list.json",
        json.dumps(body, separators=(",", ":")).encode(),
        partial(_lead_made, wanted),
    )


def _lead_made(wanted: Mapping[str, str], answer: bytes) -> str | None:
    """The lead crm.lead.list found ({"result": [{"ID": "77", ...}], ...}); None when none.
    Only leads that carry the event's ids count: a portal that ignored the filter would list
    every lead. An answer of another shape is an error: sending again on it could make a second
    lead."""
    try:
        found = json.loads(answer)["result"]
        if not isinstance(found, list):
            raise TypeError("result is not a list")
        ids = [
            str(lead["ID"])
            for lead in found
            if all(str(lead.get(k)) == v for k, v in wanted.items())
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"crm.lead.list answered {answer[:200]!r}") from exc
    return f"lead {', '.join(ids)}" if ids else None


def _title(call: Mapping[str, Any]) -> str:
    if call["source"] is None:
        return f"Call from {call['caller']}"
    return f"Call from {call['caller']} ({call['source']} / {call['medium']})"


def _description(call: Mapping[str, Any]) -> str:
    parts = [f"calltrack call {call['id']} to {call['did']}, matched by {call['attribution']}"]
    if call["landing_url"]:
        parts.append(f"landing page {call['landing_url']}")
    if call["referrer"]:
        parts.append(f"referrer {call['referrer']}")
    return "; ".join(parts)


def _comments(call: Mapping[str, Any], recording_url: str | None) -> str:
    lines = [f"{call['status']}, talk {round(call['talk_seconds'])} s"]
    if recording_url:
        lines.append(f"Recording: {recording_url}")
    return "\n".join(lines)


def lead_request(
    webhook_url: str,
    secret: str | None,
    event: PendingEvent,
    call: Mapping[str, Any],
    recording_url: str | None,
) -> Outgoing:
    if event.event is not Event.CALL_COMPLETED:
        raise Skip(f"bitrix24 makes leads of call.completed only, not {event.event}")
    fields: dict[str, Any] = {
        "TITLE": _title(call),
        "PHONE": [{"VALUE": call["caller"], "VALUE_TYPE": "WORK"}],
        "SOURCE_ID": "CALL",
        "SOURCE_DESCRIPTION": _description(call),
        **{f"UTM_{name.upper()}": call[name] for name in UTM_FIELDS if call[name] is not None},
        "COMMENTS": _comments(call, recording_url),
        # the event's id, the same on every retry: what lead_lookup finds
        "ORIGINATOR_ID": ORIGINATOR,
        "ORIGIN_ID": event.event_id,
    }
    body = {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}}
    return Outgoing(
        url=lead_url(webhook_url),
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json"},
        secret=secret,
    )
