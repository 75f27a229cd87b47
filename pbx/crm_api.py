"""What a CRM tells calltrack, behind the staff API's bearer token: what a call came to
(`PATCH /api/v1/calls/{id}`) and deals closed later (`POST /api/v1/sales`), so revenue reaches
the channel that brought the caller."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from attribution.calls import CALLER_MAX, NOTES_MAX, allowed_tags, stored_notes
from attribution.money import MoneyError, cents_text, to_cents
from attribution.phone import PhoneNumberError, to_e164
from attribution.sales import REFERENCE_MAX, Unmatched, why_unmatched
from pbx.http import in_time_range, json_error, public_base_url, read_json_object, unix_time
from pbx.keys import CALLS, CLOCK, ENGINE, OUTBOX, SETTINGS
from pbx.settings import Scope
from pbx.staff_api import api_caller, call_id_of, call_json, iso
from pbx.storage.calls import ReviewChanges
from pbx.storage.sales import Sale, SaleStore, Taken

CALL_FIELDS = ("tags", "score", "sale_amount", "notes")
SALE_FIELDS = ("caller", "amount", "at", "reference")


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=message)


def _only(body: dict[str, Any], known: tuple[str, ...]) -> None:
    """A field we do not know is a typo the client should hear about, not data to drop."""
    if unknown := sorted(set(body) - set(known)):
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(known)}")


def _cents(value: object, name: str) -> int:
    try:
        return to_cents(value)
    except MoneyError as exc:
        raise _bad(f"{name}: {exc}") from None


def _review_changes(body: dict[str, Any], allowed_tags: list[str]) -> ReviewChanges:
    """The PATCH body as the review fields it changes; the ones left out stay."""
    _only(body, CALL_FIELDS)
    if not body:
        raise _bad(f"nothing to change: give any of {', '.join(CALL_FIELDS)}")
    changes = ReviewChanges()
    if "tags" in body:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise _bad("tags: expected a list of tags")
        if unknown := sorted(set(tags) - set(allowed_tags)):
            raise _bad(
                f"tags: unknown tag(s) {', '.join(map(repr, unknown))};"
                f" expected any of {', '.join(allowed_tags)}"
            )
        changes["tags"] = frozenset(tags)
    if "score" in body:
        score = body["score"]
        if score is not None and (type(score) is not int or not 1 <= score <= 5):
            raise _bad("score: expected a whole number from 1 to 5, or null")
        changes["score"] = score
    if "sale_amount" in body:
        amount = body["sale_amount"]
        changes["sale_cents"] = None if amount is None else _cents(amount, "sale_amount")
    if "notes" in body:
        notes = body["notes"]
        if notes is not None and (not isinstance(notes, str) or len(notes) > NOTES_MAX):
            raise _bad(f"notes: expected text of at most {NOTES_MAX} characters, or null")
        changes["notes"] = stored_notes(notes)
    return changes


async def patch_call(request: web.Request) -> web.Response:
    """Change the given review fields of a call; the answer is the call as stored now."""
    by = api_caller(request, Scope.CALLS_WRITE)
    if isinstance(by, web.Response):
        return by
    call_id = call_id_of(request.match_info["call_id"])
    if call_id is None:
        return json_error(404, "no such call")
    body = await read_json_object(request)
    store = request.app[CALLS]
    current = await store.get(call_id)
    if current is None:
        return json_error(404, "no such call")
    changes = _review_changes(body, allowed_tags(request.app[SETTINGS].tags, current["tags"]))
    call = await store.get(int(call_id)) if await store.amend(int(call_id), changes, by) else None
    if call is None:
        return json_error(404, "no such call")
    full = call_json(call, public_base_url(request))
    if not may_read_calls(request):  # the fields it may write, not the call's pages or caller
        return web.json_response({name: full[name] for name in WRITTEN if name in full})
    return web.json_response(full)


#: what PATCH answers a token that may write calls but not read them: what it wrote
WRITTEN = ("id", "tags", "score", "notes", "sale_cents", "reviewed_by", "reviewed_at")


def may_read_calls(request: web.Request) -> bool:
    """Whether the request's token has calls:read: the write endpoints answer the call itself
    (its caller, pages, click ids, recording) only then; a token reaches only what it needs."""
    return not isinstance(api_caller(request, Scope.CALLS_READ), web.Response)


def _text(body: dict[str, Any], name: str, longest: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        raise _bad(f"{name}: expected text of 1 to {longest} characters")
    return value


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _sale_time(at: str | int | float | None, zone: str) -> float | None:
    """`at` as Unix seconds. A date alone (a CRM's close date: Bitrix24's CLOSEDATE) is the end
    of that day in ui.timezone: as midnight UTC it came before that day's calls, and the sale
    went to an older call or to none."""
    if isinstance(at, str) and _DATE.fullmatch(at.strip()):
        try:
            day = date.fromisoformat(at.strip())
        except ValueError:
            raise _bad("at: expected ISO 8601 time or Unix seconds") from None
        if day == date.max:  # its end, the next day's midnight, is past what a date holds
            return in_time_range(math.inf, "at")
        # the next day's midnight, less a microsecond: 23:59:59 may come twice (a fall-back
        # at 24:00, as in America/Santiago), and time.max is the first of them
        next_midnight = datetime.combine(day + timedelta(days=1), time(), ZoneInfo(zone))
        return in_time_range(next_midnight.timestamp() - 1e-6, "at")
    return unix_time(None if at is None else str(at), "at")


def _sale(body: dict[str, Any], region: str | None, zone: str) -> Sale:
    _only(body, SALE_FIELDS)
    reference = _text(body, "reference", REFERENCE_MAX)
    try:
        caller = to_e164(_text(body, "caller", CALLER_MAX), region)
    except PhoneNumberError as exc:
        raise _bad(f"caller: {exc}") from None
    if "amount" not in body:
        raise _bad("amount: required")
    at = body.get("at")
    if isinstance(at, bool) or not isinstance(at, str | int | float | None):
        raise _bad("at: expected ISO 8601 time or Unix seconds")
    return Sale(
        reference=reference,
        caller=caller,
        amount_cents=_cents(body["amount"], "amount"),
        at=_sale_time(at, zone),
    )


async def post_sale(request: web.Request) -> web.Response:
    """Credit a deal to the caller's latest call before it (201 new, 200 known reference)."""
    by = api_caller(request, Scope.SALES_WRITE)
    if isinstance(by, web.Response):
        return by
    settings = request.app[SETTINGS]
    sale = _sale(await read_json_object(request), settings.region, settings.ui.timezone)
    store = SaleStore(
        request.app[ENGINE],
        settings.region,
        settings.sales.match_days,
        request.app[CLOCK],
        request.app[OUTBOX],
    )
    credited = await store.record(sale, by)
    if isinstance(credited, Unmatched):
        message = why_unmatched(credited, sale.caller, settings.sales.match_days)
        return json_error(404, message, reason=str(credited))
    if isinstance(credited, Taken):
        return json_error(
            409,
            f"reference {sale.reference!r} is a sale another API token posted: each token's"
            " references are its own (prefix yours, e.g. shop-1001)",
            reason="another_token",
        )
    call = await request.app[CALLS].get(credited.call_id) if may_read_calls(request) else None
    answer = {
        "call_id": credited.call_id,
        "call": call_json(call, public_base_url(request)) if call else None,
        "reference": sale.reference,
        "amount": cents_text(credited.amount_cents),
        "caller": sale.caller,
        "at": iso(credited.at),
        "created": credited.created,
    }
    return web.json_response(answer, status=201 if credited.created else 200)


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.patch("/api/v1/calls/{call_id}", patch_call),
        web.post("/api/v1/sales", post_sale),
    ]
