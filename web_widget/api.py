"""The visitor API the widget calls: start a visit, ping it; CORS for the sites' own origins.

When the database cannot take the visit (down, full), the visitor gets a 200 with no numbers,
which the widget reads as "show the site's own numbers", and the ids it sent, so that it goes
on pinging (a visitor with no session yet starts one on the next ping): the site keeps working
and nobody sees an error. The database's failure is logged and shown in /healthz (its owner,
storage.health, says so once, not once per visitor).
"""

from __future__ import annotations

import math
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attribution.ad_clients import AdClientIds
from attribution.crawlers import is_crawler
from attribution.traffic import CONTROL_CHARACTERS
from pbx.http import client_ip, error_as_json, internal_error, json_error, read_body
from pbx.keys import ANSWERS, METRICS, VISITS
from pbx.storage.errors import is_transient
from pbx.storage.visits import TooManyVisits, Visit, VisitRequest, is_id

STATIC = Path(__file__).parent / "static"
API_PREFIX = "/api/v1/visits"


# Bodies are parsed by pydantic straight from the bytes (one pass in its Rust core, a third of
# json.loads + model_validate): a body that is not a JSON object is a 400 with the reason too.
#: a page's address as a browser sends it: no control characters (a browser percent-encodes
#: them; PostgreSQL refuses a NUL in text, and a batch of other visitors' writes with it)
URL_PATTERN = rf"^https?://[^{CONTROL_CHARACTERS}]*$"


class VisitBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    site: str = Field(max_length=64)
    url: str = Field(max_length=4096, pattern=URL_PATTERN)
    referrer: str | None = Field(None, max_length=4096, pattern=rf"^[^{CONTROL_CHARACTERS}]*$")
    visitor_id: str | None = Field(None, max_length=64)
    session_id: str | None = Field(None, max_length=64)
    dnt: bool = False
    # read by the widget from the ad platforms' cookies; checked by AdClientIds, which drops
    # what has not their shape instead of refusing the visit
    ga_client_id: object = None
    ym_client_id: object = None


class PingBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    visitor_id: str = Field(max_length=64)
    url: str | None = Field(None, max_length=4096, pattern=URL_PATTERN)


def _invalid(exc: ValidationError) -> web.Response:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
    return json_error(400, "invalid request", problems=problems)


def _cors(request: web.Request, response: web.Response) -> web.Response:
    """Let the page of a site that lists the request's origin read the answer (CORS).

    Set by the two handlers themselves, not by a middleware: a middleware is a layer every
    request of the daemon goes through, and the pings are nine in ten of them."""
    origin = request.headers.get("Origin", "")
    if request.app[ANSWERS].allowed(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _answer(request: web.Request, visit: Visit) -> web.Response:
    """The visit's numbers (see VisitorAnswers.body), encoded once while they stay the same."""
    written = request.app[VISITS].plan(visit.site).own
    return _json(request.app[ANSWERS].body(visit, written))


def _own_numbers(
    request: web.Request, error: Exception, visitor_id: str | None, session_id: str | None
) -> web.Response:
    """The answer while the database is away: the site's own numbers, the visitor's own ids.
    Any other failure is a bug, raised again for the handler's own logged 500."""
    if not is_transient(error):
        raise error
    request.app[METRICS].visits_unstored.inc()
    return _json(
        request.app[ANSWERS].own_numbers(
            visitor_id if is_id(visitor_id) else None, session_id if is_id(session_id) else None
        )
    )


async def start_visit(request: web.Request) -> web.Response:
    """Errors are answered here, as in ping."""
    try:
        try:
            body = VisitBody.model_validate_json(await read_body(request) or b"{}")
        except ValidationError as exc:
            return _cors(request, _invalid(exc))
        site = request.app[ANSWERS].sites_for(request.headers.get("Origin", "")).get(body.site)
        if site is None:
            return _cors(request, json_error(403, "unknown site or origin not allowed for it"))
        if is_crawler(request.headers.get("User-Agent")):  # no number held, no visit stored
            request.app[METRICS].crawler_visits.labels(site.name).inc()
            return _cors(request, _json(request.app[ANSWERS].own_numbers(None, None)))
        privacy = site.respect_privacy_signals and (
            body.dnt or request.headers.get("Sec-GPC") == "1" or request.headers.get("DNT") == "1"
        )
        try:
            visit = await request.app[VISITS].start_visit(
                VisitRequest(
                    site=site,
                    url=body.url,
                    referrer=body.referrer or None,
                    visitor_id=body.visitor_id if is_id(body.visitor_id) else None,
                    session_id=body.session_id if is_id(body.session_id) else None,
                    client_ip=client_ip(request),
                    privacy_signal=privacy,
                    # a visitor who asked not to be tracked is not linked to their ad profiles
                    ad_ids=AdClientIds()
                    if privacy
                    else AdClientIds.read(body.ga_client_id, body.ym_client_id),
                )
            )
        except TooManyVisits as exc:
            response = json_error(429, "too many new visits from this network; try again later")
            response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
            return _cors(request, response)
        except Exception as error:
            return _cors(request, _own_numbers(request, error, body.visitor_id, body.session_id))
        request.app[METRICS].visits.labels(site.name, visit.tracking).inc()
        return _cors(request, _answer(request, visit))
    except web.HTTPException as exc:  # read_body's 413
        return _cors(request, error_as_json(request, exc))
    except Exception:  # its CORS header too: the page reads it as an error, not a CORS one
        return _cors(request, internal_error(request))


async def ping(request: web.Request) -> web.Response:
    """Errors are answered here (JSON, a bug logged as a 500): no layer around the hot path;
    see pbx.app.errors_and_navigation."""
    try:
        session_id = request.match_info["session_id"]
        try:
            body = PingBody.model_validate_json(await read_body(request) or b"{}")
        except ValidationError as exc:
            return _cors(request, _invalid(exc))
        if not is_id(session_id) or not is_id(body.visitor_id):
            return _cors(request, json_error(404, "no such session; start a new visit"))
        sites = request.app[ANSWERS].sites_for(request.headers.get("Origin", ""))
        if not sites:
            return _cors(request, json_error(403, "origin not allowed"))
        try:
            visit = await request.app[VISITS].ping(
                session_id, body.visitor_id, body.url, allowed_sites=sites.keys()
            )
        except Exception as error:
            return _cors(request, _own_numbers(request, error, body.visitor_id, session_id))
        if visit is None:
            return _cors(request, json_error(404, "no such session; start a new visit"))
        request.app[METRICS].pings.inc()
        return _cors(request, _answer(request, visit))
    except web.HTTPException as exc:  # read_body's 413
        return _cors(request, error_as_json(request, exc))
    except Exception:  # its CORS header too: the page reads it as an error, not a CORS one
        return _cors(request, internal_error(request))


async def widget_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "widget.js",
        headers={
            "Content-Type": "application/javascript; charset=utf-8",
            "Cache-Control": "public, max-age=300",
            "Access-Control-Allow-Origin": "*",
        },
    )


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight, allowed only for origins some site lists; the handlers check the site."""
    origin = request.headers.get("Origin", "")
    if not request.app[ANSWERS].allowed(origin):
        return json_error(403, "origin not allowed")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
            "Vary": "Origin",
        },
    )


#: the handlers that answer their own errors (pbx.app wraps every other one)
OWN_ERRORS = frozenset({start_visit, ping})


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.post(API_PREFIX, start_visit),
        web.post(API_PREFIX + "/{session_id}/ping", ping),
        web.get("/widget.js", widget_js),
        web.options(API_PREFIX, preflight),
        web.options(API_PREFIX + "/{session_id}/ping", preflight),
    ]
