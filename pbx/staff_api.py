"""The staff and integration API: calls and live leases, behind a bearer token."""

from __future__ import annotations

import hmac
import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from attribution.clients import client_network, is_public
from pbx.auth import current_user
from pbx.http import client_ip, json_error, public_base_url, unix_time, whole_number
from pbx.keys import CALLS, METRICS, SETTINGS, TOKEN_GUESSES, VISITS
from pbx.settings import ApiToken, Scope
from pbx.storage.call_speech_read import PHRASE_MAX
from pbx.storage.calls import CallFilter
from pbx.storage.staff_sessions import text_sha256
from pbx.storage.tables import MAX_ROW_ID
from recordings.files import recording_path

CALL_ID = re.compile(r"[0-9]{1,12}")
#: wrong bearer tokens one client network (an address, an IPv6 /64) may present in the window
TOKEN_GUESS_LIMIT = 20
TOKEN_GUESS_WINDOW = 300.0
log = logging.getLogger(__name__)


def call_id_of(text: str) -> int | None:
    """The call id a path names, None when it names none a table can hold (past MAX_ROW_ID,
    PostgreSQL refused the query: a 500 where there is no such call)."""
    if not CALL_ID.fullmatch(text) or int(text) > MAX_ROW_ID:
        return None
    return int(text)


def _presented_token(request: web.Request) -> str | None:
    """The bearer token the request carries, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _configured(request: web.Request, token: str) -> ApiToken | None:
    """The configured token `token` is (compared in constant time)."""
    digest = text_sha256(token)
    for configured in request.app[SETTINGS].api_tokens:
        if hmac.compare_digest(digest, configured.token_sha256):
            return configured
    return None


def api_caller(request: web.Request, scope: Scope) -> str | web.Response:
    """The name of the request's token when it may do `scope`; else the answer: 401 without a
    valid token, 403 naming the scope for a valid one without it, 429 (unchecked) from a public
    client network that presented TOKEN_GUESS_LIMIT wrong tokens in TOKEN_GUESS_WINDOW: a token
    an admin chose is guessed at the network's speed otherwise, and nobody would see it. A
    private or loopback peer is the site's own proxy or NAT (trusted_proxies not set), with
    every integration behind it: its wrong tokens are logged and counted, never locked out,
    or one stranger's 20 requests would lock out every CRM."""
    guesses = request.app[TOKEN_GUESSES]
    network = client_network(client_ip(request))
    public = is_public(network)
    wait = guesses.retry_after([network]) if public else 0.0
    if wait:
        request.app[METRICS].http_errors.labels("429").inc()
        response = json_error(429, "too many wrong bearer tokens from this network")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    presented = _presented_token(request)
    token = None if presented is None else _configured(request, presented)
    if token is None:
        if presented is not None:
            request.app[METRICS].http_errors.labels("401").inc()
            reached_before = guesses.retry_after([network])
            guesses.failed([network])
            if not reached_before and guesses.retry_after([network]):  # once a window
                log.warning(
                    "%s: %d wrong bearer tokens within %.0f s%s",
                    network,
                    TOKEN_GUESS_LIMIT,
                    TOKEN_GUESS_WINDOW,
                    ": its requests are refused unchecked for a while"
                    if public
                    else " (a private address: a proxy without http.trusted_proxies?)",
                )
        return unauthorized()
    if not token.may(scope):
        return json_error(403, f"this token may not do this: it needs the {scope} scope")
    return token.name


def unauthorized() -> web.Response:
    """401 with the challenge that tells the client a bearer token is wanted."""
    response = json_error(401, "a valid bearer token is required")
    response.headers["WWW-Authenticate"] = 'Bearer realm="calltrack"'
    return response


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    return default if value is None else whole_number(value, name, low, high)


def keyword(value: str | None) -> str | None:
    """The `keyword` filter: a phrase the speech worker heard (empty: any call)."""
    phrase = (value or "").strip()
    if len(phrase) > PHRASE_MAX:
        raise web.HTTPBadRequest(reason=f"keyword: at most {PHRASE_MAX} characters")
    return phrase or None


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts is not None else None


def call_json(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    out = {
        **row,
        "started_at": iso(row["started_at"]),
        "answered_at": iso(row["answered_at"]),
        "ended_at": iso(row["ended_at"]),
        "recording_url": f"{base_url}/api/v1/calls/{row['id']}/recording"
        if row["recording"]
        else None,
    }
    out.pop("recording")
    return out


async def list_calls(request: web.Request) -> web.Response:
    if isinstance(refused := api_caller(request, Scope.CALLS_READ), web.Response):
        return refused
    query = request.query
    where = CallFilter(
        since=unix_time(query.get("since"), "since"),
        until=unix_time(query.get("until"), "until"),
        source=query.get("source") or None,
        keyword=keyword(query.get("keyword")),
        limit=_int(query.get("limit"), "limit", 100, 1, 1000),
        offset=_int(query.get("offset"), "offset", 0, 0, 10**9),
    )
    total, rows = await request.app[CALLS].list(where)
    base = public_base_url(request)
    return web.json_response({"total": total, "calls": [call_json(r, base) for r in rows]})


async def list_leases(request: web.Request) -> web.Response:
    if isinstance(refused := api_caller(request, Scope.LEASES_READ), web.Response):
        return refused
    rows = await request.app[VISITS].current_leases()
    leases = [
        {**r, "held_until": iso(r["held_until"]), "started_at": iso(r["started_at"])}
        for r in rows
        if r["held"]
    ]
    return web.json_response({"leases": leases})


async def recording(request: web.Request) -> web.StreamResponse:
    """The call's recording, with HTTP Range so players can seek; for a valid token or a
    logged-in staff member."""
    if await current_user(request) is None and isinstance(
        refused := api_caller(request, Scope.RECORDINGS_READ), web.Response
    ):
        return refused
    call_id = call_id_of(request.match_info["call_id"])
    if call_id is None:
        return json_error(404, "no such call, or it has no recording")
    return await recording_file(request, call_id)


async def recording_file(request: web.Request, call_id: int) -> web.StreamResponse:
    """Call `call_id`'s recording file (FileResponse answers Range), once the caller is
    allowed: by a token or login here, by a signed link in pbx/recording_links_api.py."""
    call = await request.app[CALLS].get(call_id)
    if call is None or not call["recording"]:
        return json_error(404, "no such call, or it has no recording")
    path = recording_path(request.app[SETTINGS].asterisk_recordings_dir, call["recording"])
    if path is None or not path.is_file():
        return json_error(404, "the recording file is missing")
    # asked again each time (a 304 while it is the same file): the same URL serves the WAV,
    # then the MP3 once converted, then nothing once retention deleted it, and a player that
    # kept the WAV's first bytes must not ask for a later Range of the MP3
    return web.FileResponse(path, headers={"Cache-Control": "private, no-cache"})


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/api/v1/calls", list_calls),
        web.get("/api/v1/calls/{call_id}/recording", recording),
        web.get("/api/v1/leases", list_leases),
    ]
