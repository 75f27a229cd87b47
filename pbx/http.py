"""HTTP plumbing shared by the APIs and pages: JSON bodies within a size cap, forms, whole
numbers from the query, JSON errors, the client's address."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from pbx.keys import METRICS, SETTINGS
from pbx.networks import Network, networks, parse_address, within
from pbx.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: how long a request's body may take to arrive once its headers have
BODY_SECONDS = 30.0


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


#: the staff forms' and the CRM's bodies may be this large whatever `http.max_body_bytes` (the
#: visitor API's) says: a review's NOTES_MAX characters of any script take up to 12 bytes each,
#: percent-encoded in a form or \u-escaped in JSON (3,000 Cyrillic characters were a 413)
REVIEW_BODY_MAX = 65536


def staff_body_limit(settings: Settings) -> int:
    """The largest body a staff form or a CRM request may send."""
    return max(settings.http.max_body_bytes, REVIEW_BODY_MAX)


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The request's whole body, within `limit` (default `http.max_body_bytes`; 413 past it).

    Read to its end, piece by piece: a body may arrive apart from its headers or in several
    pieces (a proxy, a slow mobile link), and one read returns only what has arrived so far.
    A body that stops coming (the client went away, a broken chunked encoding) is the client's
    400, not a logged bug; one still trickling in after BODY_SECONDS is a 408."""
    if limit is None:
        limit = request.app[SETTINGS].http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    pieces = []
    size = 0
    try:
        if request.content.is_eof():
            # the whole body arrived with its headers, as a ping's does: taken as it lies, with
            # no timer and no await per piece
            pieces.append(request.content.read_nowait())
            size = len(pieces[0])
        else:
            async with asyncio.timeout(BODY_SECONDS):
                while piece := await request.content.readany():
                    size += len(piece)
                    if size > limit:
                        break
                    pieces.append(piece)
    except TimeoutError:
        raise web.HTTPRequestTimeout(reason="the body did not arrive in time") from None
    except (ConnectionError, HttpProcessingError):
        raise web.HTTPBadRequest(reason="the body did not arrive whole") from None
    if size > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
    return b"".join(pieces)


#: what no text a client sends may hold: a NUL (PostgreSQL refuses it in text) or a lone
#: surrogate (no UTF-8 encodes it). JSON's "\u0000" and "\ud800", a form's %00 and a query's
#: are refused as the client's error, before any statement or hash meets them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_REASON = "a NUL character or a lone surrogate, which no text here may hold"


def refuse_unstorable(values: Iterable[object], where: str) -> None:
    """A 400 if any of `values` is text holding what no text may (see _UNSTORABLE)."""
    for value in values:
        if isinstance(value, str) and _UNSTORABLE.search(value):
            raise web.HTTPBadRequest(reason=f"{where} holds {_UNSTORABLE_REASON}")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (a CRM's: see REVIEW_BODY_MAX); any other body is the
    client's error (4xx), never ours."""
    body = await read_body(request, staff_body_limit(request.app[SETTINGS]))
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested too deep, e.g. [[[[...
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    refuse_unstorable(_texts(data), "the body")
    return data


def _texts(data: object) -> Iterator[object]:
    """Every key and value in a parsed JSON document (without recursion: its depth is the
    client's)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield from item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The posted form; a body that does not decode is the client's error (400), never ours."""
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError, LookupError):  # LookupError: an unknown charset
        raise web.HTTPBadRequest(reason="the form is not valid UTF-8 form data") from None
    refuse_unstorable([*form.keys(), *form.values()], "the form")
    return form


LAST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def unix_time(value: str | None, name: str) -> float | None:
    """A time given as Unix seconds or ISO 8601 (a time without zone is UTC), from 1970 to
    9999; None when not given."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _iso_seconds(value, name)
    return in_time_range(seconds, name)


def in_time_range(seconds: float, name: str) -> float:
    """`seconds`, a time from 1970 to 9999; else a 400 naming `name` (also NaN and infinities)."""
    if not 0 <= seconds <= LAST_TIME:
        raise web.HTTPBadRequest(reason=f"{name}: expected a time from 1970 to 9999")
    return seconds


def _iso_seconds(value: str, name: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name}: expected ISO 8601 time or Unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII only: "²".isdigit() is true, int("²") fails


def whole_number(value: str, name: str, low: int, high: int) -> int:
    """A query parameter as a whole number within [low, high], or a 400 that says so."""
    if not _WHOLE_NUMBER.fullmatch(value) or not low <= int(value) <= high:
        raise web.HTTPBadRequest(reason=f"{name}: expected a whole number from {low} to {high}")
    return int(value)


def _hops(request: web.Request, header: str) -> list[str]:
    """The values of a list header, in order, over every line of it: a proxy may add its own
    line after the client's (HAProxy's `option forwardfor`) instead of appending to it, and
    the first line alone is the client's to write."""
    return [hop.strip() for hop in ",".join(request.headers.getall(header, [])).split(",")]


def _last_hop(request: web.Request, header: str) -> str:
    """The last value of a list header (see _hops)."""
    return _hops(request, header)[-1]


def client_ip(request: web.Request) -> str | None:
    """The visitor's address; X-Forwarded-For is believed only from configured proxies, read
    from its end (each proxy appends the address it was reached from) past every hop that is
    itself a trusted proxy (a CDN's edge, then the site's nginx), as nginx's real_ip_recursive."""
    peer = request.remote
    if "X-Forwarded-For" not in request.headers:
        return peer
    trusted = networks(tuple(request.app[SETTINGS].http.trusted_proxies))
    if _from_trusted_proxy(request, trusted):
        hops = _hops(request, "X-Forwarded-For")
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                return peer  # a hop that is no address: nothing before it can be believed
            if not within(address, trusted):
                return str(address)
        return str(parse_address(hops[0]))  # every hop a trusted proxy: the first of them
    if peer is not None and (address := parse_address(peer)) is not None and not address.is_global:
        _untrusted_forwarder(str(address))
    return peer


@functools.lru_cache(maxsize=256)
def _untrusted_forwarder(peer: str) -> None:
    """Says once per peer that a local address sent X-Forwarded-For unheeded: most likely the
    site's own proxy left out of `http.trusted_proxies`, which makes every visitor its one
    client, whose caps (max_new_visits_per_ip, max_pool_share_per_ip) then bind the whole site.
    (A visitor's own address is a public one: a proxy in their office is no concern here.)"""
    log.warning(
        "%s sends X-Forwarded-For but is not in http.trusted_proxies: every visitor through it"
        " counts as one client (its caps: http.max_new_visits_per_ip, max_pool_share_per_ip);"
        " if it is your proxy, add it",
        peer,
    )


def _from_trusted_proxy(
    request: web.Request,
    trusted: tuple[Network, ...] | None = None,
) -> bool:
    """Whether the peer is one of `http.trusted_proxies` (`trusted`: their networks, if the
    caller has them already)."""
    if trusted is None:
        trusted = networks(tuple(request.app[SETTINGS].http.trusted_proxies))
    if not trusted or request.remote is None:
        return False
    peer = parse_address(request.remote)
    return peer is not None and within(peer, trusted)


def served_over_https(request: web.Request) -> bool:
    """Whether the browser reached us over https: directly, per `http.public_url`, or through a
    configured proxy saying so in X-Forwarded-Proto (from anyone else the header is ignored)."""
    public = request.app[SETTINGS].http.public_url
    if request.secure or (public and public.startswith("https://")):
        return True
    return (
        _from_trusted_proxy(request) and _last_hop(request, "X-Forwarded-Proto").lower() == "https"
    )


def public_base_url(request: web.Request) -> str:
    """Where browsers reach the daemon, for links in answers: `http.public_url` when set (the
    request's Host header is the client's to choose), else the address this request used."""
    public = request.app[SETTINGS].http.public_url
    return public.rstrip("/") if public else f"{request.scheme}://{request.host}"


def with_error_headers(response: web.Response, error: web.HTTPException) -> web.Response:
    """An error answer keeps the headers that tell the client what to do next."""
    for header in ("Allow", "WWW-Authenticate", "Retry-After"):
        if header in error.headers:
            response.headers[header] = error.headers[header]
    return response


def error_as_json(request: web.Request, error: web.HTTPException) -> web.Response:
    """An API's error (4xx, 5xx) as JSON with its reason."""
    request.app[METRICS].http_errors.labels(str(error.status)).inc()
    return with_error_headers(json_error(error.status, error.reason), error)


#: seconds a client is told to wait when the database is away (/healthz says why meanwhile)
DATABASE_RETRY_AFTER = 30


def database_unavailable(request: web.Request, reason: str) -> web.Response:
    """The database away or full (pbx.storage.errors.is_outage): not a bug, and not the
    client's; it may try again. One line at debug: /healthz and the write-health log say the
    outage once, not once per request."""
    log.debug("%s %r: database %s", request.method, request.path, reason)
    request.app[METRICS].http_errors.labels("503").inc()
    response = json_error(503, "the database is not available now; try again in a minute")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def internal_error(request: web.Request) -> web.Response:
    """A bug: logged with its trace here, answered 500 without one."""
    # the path repr'd: a %0a in it must not start a forged log line
    log.exception("unhandled error on %s %r", request.method, request.path)
    request.app[METRICS].http_errors.labels("500").inc()
    return json_error(500, "internal error; it has been logged")
