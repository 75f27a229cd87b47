"""`GET /api/v1/calls/{id}/journey` (bearer token): the caller's visits and earlier calls up to
the call, with the gaps in days and the channels that brought them back (attribution.journey)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from attribution.journey import Journey, JourneyCall
from pbx.http import json_error
from pbx.keys import READER, SETTINGS
from pbx.settings import Scope
from pbx.staff_api import api_caller, call_id_of, iso
from pbx.storage.journey import MAX_CALLS, MAX_PAGES, MAX_VISITS, load_journey


def _call_json(call: JourneyCall) -> dict[str, Any]:
    return asdict(call) | {"started_at": iso(call.started_at), "tags": list(call.tags)}


def journey_json(journey: Journey) -> dict[str, Any]:
    return {
        "call": _call_json(journey.call),
        "visits": [
            asdict(visit)
            | {
                "started_at": iso(visit.started_at),
                "pages": [{"at": iso(p.at), "url": p.url} for p in visit.pages],
            }
            for visit in journey.visits
        ],
        "visits_total": journey.visits_total,
        "earlier_calls": [_call_json(c) for c in journey.earlier_calls],
        "first_visit_at": iso(journey.first_visit_at),
        "days_since_first_visit": journey.days_since_first_visit,
        "days_between_calls": list(journey.days_between_calls),
        "channels_back": list(journey.channels_back),
        "truncated": journey.truncated,
        "probable": [asdict(p) | {"released_at": iso(p.released_at)} for p in journey.probable],
        "limits": {"visits": MAX_VISITS, "pages": MAX_PAGES, "earlier_calls": MAX_CALLS},
    }


async def get_journey(request: web.Request) -> web.Response:
    if isinstance(refused := api_caller(request, Scope.CALLS_READ), web.Response):
        return refused
    call_id = call_id_of(request.match_info["call_id"])
    journey = None
    if call_id is not None:
        journey = await load_journey(request.app[READER], call_id, request.app[SETTINGS].region)
    if journey is None:
        return json_error(404, "there is no call with this id")
    return web.json_response(journey_json(journey))


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/api/v1/calls/{call_id}/journey", get_journey)]
