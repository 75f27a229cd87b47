"""Hostile input on every route, logged in and with a token so the input is really parsed: deep
JSON, unicode digits, huge numbers, bad UTF-8, line breaks in paths. Each answer is the client's
error (4xx) with a JSON body on the API and an HTML page on the staff pages, never a 500."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.exc import OperationalError

from attribution.calls import CallReport
from pbx.app import build_app, errors_and_navigation
from pbx.keys import CALLS
from tests.helpers import (
    ORIGIN,
    PASSWORD,
    STAFF_TOKEN,
    FakeClock,
    db_error,
    migrate,
    settings_for,
    staff_users,
)

Client = TestClient  # type: ignore[type-arg]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
DEEP_JSON = b"[" * 16_000
HUGE = "9" * 30
HUGER = "9" * 5000  # longer than Python's int() accepts from a string
SESSION = "0" * 32


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    settings = settings_for(tmp_path, users=staff_users())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    page = await client.get("/login")
    match = CSRF_FIELD.search(await page.text())
    assert match
    logged_in = await client.post(
        "/login",
        data={"csrf": match.group(1), "name": "ada", "password": PASSWORD},
        allow_redirects=False,
    )
    assert logged_in.status == 303
    await client.app[CALLS].store(
        CallReport(
            linkedid="c1",
            caller="+79161234567",
            did="+74990000101",
            started_at=1_800_000_000.0,
            ended_at=1_800_000_040.0,
            answered_at=1_800_000_005.0,
            dial_status="ANSWER",
            recording=None,
        )
    )
    return client


def _get(path: str) -> tuple[str, str, bytes | None, str]:
    return ("GET", path, None, "")


def _post(path: str, body: bytes, content_type: str) -> tuple[str, str, bytes | None, str]:
    return ("POST", path, body, content_type)


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BAD_UTF8 = b"\xff\xfe\xc3\x28"
REQUESTS = [
    # the staff API
    _get("/api/v1/calls?limit=²"),
    _get("/api/v1/calls?offset=²"),
    _get(f"/api/v1/calls?limit={HUGE}"),
    _get(f"/api/v1/calls?offset={HUGER}"),
    _get("/api/v1/calls?since=1e999"),
    _get("/api/v1/calls?since=nan"),
    _get(f"/api/v1/calls?until={HUGE}"),
    _get("/api/v1/calls?since=9999-12-31T23:59:59-23:59"),
    _get("/api/v1/calls/²/recording"),
    _get(f"/api/v1/calls/{HUGE}/recording"),
    _get(f"/api/v1/calls/{HUGER}/recording"),
    _get("/api/v1/calls/%ff/recording"),
    _get("/api/v1/calls/1%0aforged/recording"),
    _get("/api/v1/calls%0a"),
    # reports, sales, journeys (issue 12)
    _get("/api/v1/reports?since=²⁰²⁶-01-01"),
    _get("/api/v1/reports?group_by=%ff"),
    _get("/api/v1/reports?model=last%0a"),
    _get("/api/v1/reports?since=0001-01-01&until=9999-12-31"),
    _get("/api/v1/reports?until=9999-99-99"),
    _get(f"/api/v1/reports?source={HUGER}"),
    _get("/api/v1/reports?include_probable=²"),
    _get("/api/v1/calls/²/journey"),
    _get(f"/api/v1/calls/{HUGER}/journey"),
    ("PATCH", "/api/v1/calls/1", DEEP_JSON, JSON),
    ("PATCH", "/api/v1/calls/1", BAD_UTF8, JSON),
    ("PATCH", "/api/v1/calls/1", b'{"score": 1e999}', JSON),
    ("PATCH", "/api/v1/calls/1", b'{"sale_amount": "' + HUGER.encode() + b'"}', JSON),
    ("PATCH", "/api/v1/calls/1", b'{"tags": [[[]]]}', JSON),
    ("PATCH", f"/api/v1/calls/{HUGER}", b"{}", JSON),
    _post("/api/v1/sales", DEEP_JSON, JSON),
    _post("/api/v1/sales", BAD_UTF8, JSON),
    _post("/api/v1/sales", b'{"caller": "+79161234567", "amount": 1e999, "reference": "r"}', JSON),
    _post(
        "/api/v1/sales",
        b'{"caller": "+79161234567", "amount": 1, "reference": "r", "at": "nan"}',
        JSON,
    ),
    _post("/api/v1/sales", b'{"caller": "\\u00b2\\u00b2", "amount": 1, "reference": "r"}', JSON),
    _get("/reports?since=²"),
    _get("/reports?group_by=%ff"),
    _get(f"/reports.csv?until={HUGER}"),
    _post("/calls/missed", BAD_UTF8, FORM),
    _post("/calls/missed", b"csrf=x&call_id=" + HUGER.encode(), FORM),
    _post("/admin/costs", BAD_UTF8, "multipart/form-data; boundary=x"),
    _post("/admin/costs", DEEP_JSON, JSON),
    # the visitor API
    _post("/api/v1/visits", DEEP_JSON, JSON),
    _post("/api/v1/visits", b'{"site": "main", "url": ' + b"[" * 16_000, JSON),
    _post("/api/v1/visits", BAD_UTF8, JSON),
    _post("/api/v1/visits", b'{"site": "main", "url": "http://shop.test/", "dnt": 1e999}', JSON),
    _post("/api/v1/visits", b'{"site": ' + HUGER.encode() + b"}", JSON),
    _post(f"/api/v1/visits/{SESSION}/ping", DEEP_JSON, JSON),
    _post(f"/api/v1/visits/{SESSION}/ping", BAD_UTF8, JSON),
    _post("/api/v1/visits/%0a/ping", b"{}", JSON),
    _post("/api/v1/visits/²/ping", '{"visitor_id": "²"}'.encode(), JSON),
    # the staff pages
    _get("/calls?page=²"),
    _get(f"/calls?page={HUGE}"),
    _get(f"/calls?page={HUGER}"),
    _get("/calls?from=²⁰²⁴-01-01"),
    _get("/calls/live?after=²"),
    _get(f"/calls/live?after={HUGE}"),
    _get(f"/calls/live?after={HUGER}"),
    _get("/calls.csv?page=²"),
    _get("/calls/²"),
    _get("/calls/٣"),
    _get(f"/calls/{HUGE}"),
    _get("/calls/1%0aforged"),
    _get("/calls%0a"),
    _post("/calls/1", BAD_UTF8, FORM),
    _post("/calls/1", DEEP_JSON, JSON),
    _post("/calls/²", b"csrf=x", FORM),
    _post("/login", BAD_UTF8, FORM),
    _post("/login", DEEP_JSON, JSON),
    _post("/login", b"csrf=%ff&name=%ff&password=%ff", FORM),
    _post("/logout", BAD_UTF8, FORM),
    # what no text may hold: a NUL (PostgreSQL refuses it) or a lone surrogate (no UTF-8 has it)
    _get("/calls?source=%00"),
    _get("/calls.csv?campaign=a%00"),
    _get("/api/v1/calls?source=%00"),
    _get("/reports?source=%00"),
    _get("/api/v1/reports?source=%00"),
    ("PATCH", "/api/v1/calls/1", b'{"notes": "a\\u0000b"}', JSON),
    ("PATCH", "/api/v1/calls/1", b'{"notes": "\\ud800"}', JSON),
    ("PATCH", "/api/v1/calls/1", b'{"tags": ["\\u0000"]}', JSON),
    _post(
        "/api/v1/sales", b'{"caller": "+79161234567", "amount": 1, "reference": "r\\u0000"}', JSON
    ),
    _post("/calls/1", b"csrf=x&notes=%00", FORM),
    _post("/login", b"csrf=%C3%A9&name=ada&password=x", FORM),  # compare_digest: ASCII only
    _post("/login", b"csrf=x&name=ada", "application/x-www-form-urlencoded; charset=bogus"),
]
# junk a route may accept (an unknown source matches no call; operations ignore the query)
ACCEPTABLE = [
    _get("/api/v1/calls?source=%ff%fe"),
    _get("/api/v1/leases?x=%ff"),
    _get("/calls?caller=²²²"),
    _get("/calls?source=%ff%fe"),
    _get("/admin?x=%ff"),
    _get("/api/v1/reports?source=%ff%fe&group_by=landing"),
    _get("/reports?source=%ff%fe&group_by=term"),
    _get("/calls/missed?x=%ff"),
    _get("/?x=%ff"),
    _get("/admin/costs?x=%ff"),
    _get("/healthz?limit=²"),
    _get("/metrics?x=%ff%0a"),
]


async def _send(
    client: Client, method: str, path: str, body: bytes | None, content_type: str
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {STAFF_TOKEN}", "Origin": ORIGIN}
    if content_type:
        headers["Content-Type"] = content_type
    response = await client.request(method, path, data=body, headers=headers, allow_redirects=False)
    text = await response.text(errors="replace")
    if response.status >= 400:
        if path.startswith("/api/"):
            assert "error" in await response.json()
        else:
            assert response.content_type == "text/html" and "<h1>" in text
    return response.status, text[:300]


@pytest.mark.parametrize(("method", "path", "body", "content_type"), REQUESTS)
async def test_hostile_input_is_the_clients_error(
    client: Client, method: str, path: str, body: bytes | None, content_type: str
) -> None:
    status, text = await _send(client, method, path, body, content_type)
    assert 400 <= status < 500, f"{status}: {text}"


@pytest.mark.parametrize(("method", "path", "body", "content_type"), ACCEPTABLE)
async def test_junk_input_is_never_a_server_error(
    client: Client, method: str, path: str, body: bytes | None, content_type: str
) -> None:
    status, text = await _send(client, method, path, body, content_type)
    assert status < 500, f"{status}: {text}"


async def test_the_logged_path_cannot_forge_a_log_line(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(tmp_path)
    await migrate(settings)
    app = build_app(settings, clock=FakeClock())

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    # a route added after build_app is wrapped as build_app wraps its own
    app.router.add_get(r"/api/v1/broken/{tail:[\s\S]*}", errors_and_navigation(broken))
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="pbx.http"):
        response = await client.get("/api/v1/broken/x%0a2026-01-01 INFO forged%0d%0aline")
    assert response.status == 500
    [record] = [r for r in caplog.records if r.name == "pbx.http"]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    assert "forged" in message


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/healthz", b"Cookie: calltrack_session=\xff"),
        ("/calls", b"Cookie: calltrack_session=\xff\xfe"),
        ("/login", b"Cookie: calltrack_session=\xff"),
        ("/api/v1/calls", b"Authorization: Bearer \xff"),
        ("/api/v1/calls/1/recording", b"Cookie: calltrack_session=\xff"),
    ],
)
async def test_header_bytes_that_are_not_utf8_are_not_a_server_error(
    client: Client, path: str, header: bytes
) -> None:
    """aiohttp hands such bytes over as lone surrogates, which a hash of the cookie or token
    cannot encode: every page answered 500 to a cookie of one byte 0xff. Sent raw, as a client
    library would not."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
    writer.write(b"Connection: close\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    status = int(status_line.split()[1])
    assert status < 500, status_line


@pytest.mark.parametrize("path", ["/api/v1/away/x", "/away/x"])
async def test_a_database_away_is_a_503_to_try_again_not_a_logged_bug(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    """A read the database cannot answer (down, locked, full) was a 500 'internal error' with
    a traceback per request: the client is told to try again, and /healthz says why."""
    settings = settings_for(tmp_path)
    await migrate(settings)
    app = build_app(settings, clock=FakeClock())

    async def away(request: web.Request) -> web.Response:
        raise db_error(OperationalError, "unable to open database file")

    app.router.add_get(r"/api/v1/away/{tail:.*}", errors_and_navigation(away))
    app.router.add_get(r"/away/{tail:.*}", errors_and_navigation(away))
    client = await aiohttp_client(app)
    with caplog.at_level(logging.WARNING):
        response = await client.get(path)
    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    assert "try again" in (await response.json())["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_fault_that_is_not_the_databases_stays_a_logged_500(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A recordings folder the daemon may not read raises PermissionError, an OSError, which
    the write paths count as passing: in a request it is a fault for the admin, not a wait."""
    settings = settings_for(tmp_path)
    await migrate(settings)
    app = build_app(settings, clock=FakeClock())

    async def unreadable(request: web.Request) -> web.Response:
        raise PermissionError(13, "Permission denied", "/var/spool/asterisk/monitor/c.mp3")

    app.router.add_get(r"/api/v1/unreadable", errors_and_navigation(unreadable))
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="pbx.http"):
        response = await client.get("/api/v1/unreadable")
    assert response.status == 500
    assert [r for r in caplog.records if r.name == "pbx.http"]
