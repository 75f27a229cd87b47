"""The HTTP contract through a real aiohttp server on localhost, hostile input included."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import ClientResponse, web
from aiohttp.http_exceptions import ContentLengthError
from aiohttp.streams import StreamReader
from aiohttp.test_utils import TestClient, make_mocked_request
from sqlalchemy import func, select

import pbx.http
from pbx.app import build_app, freeze_startup_heap
from pbx.keys import ENGINE, SETTINGS, VISITS
from pbx.storage.tables import page_views, sessions
from tests.helpers import ORIGIN, STAFF_TOKEN, FakeClock, migrate, settings_for

Client = TestClient  # type: ignore[type-arg]
PAID = "https://shop.test/?utm_source=google&utm_medium=cpc&utm_campaign=spring&gclid=G1"
HEADERS = {"Origin": ORIGIN}
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    settings = settings_for(tmp_path, http={"max_body_bytes": 2048})
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=FakeClock()))


async def visit(client: Client, **body: Any) -> ClientResponse:
    return await client.post(
        "/api/v1/visits", json={"site": "main", "url": PAID, **body}, headers=HEADERS
    )


async def test_visit_gets_a_tracking_number_in_the_sites_formats(client: Client) -> None:
    response = await visit(client, referrer="https://www.google.com/")
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    body = await response.json()
    assert len(body["visitor_id"]) == len(body["session_id"]) == 32
    number = body["numbers"][0]["number"]
    assert [n["replace"] for n in body["numbers"]] == ["+7 (495) 123-45-67", "8 495 1234567"]
    assert body["numbers"][1]["display"] == "8 " + number[2:5] + " " + number[5:]
    assert body["ping_interval_s"] == 30


async def test_ping_keeps_the_number_and_counts_page_views(client: Client) -> None:
    first = await (await visit(client)).json()
    response = await client.post(
        f"/api/v1/visits/{first['session_id']}/ping",
        json={"visitor_id": first["visitor_id"], "url": "https://shop.test/prices"},
        headers=HEADERS,
    )
    assert response.status == 200
    assert (await response.json())["numbers"] == first["numbers"]
    leases = await (await client.get("/api/v1/leases", headers=STAFF)).json()
    [lease] = [x for x in leases["leases"] if x["session_id"] == first["session_id"]]
    assert (lease["source"], lease["medium"], lease["campaign"]) == ("google", "cpc", "spring")


async def test_preflight_only_for_known_origins(client: Client) -> None:
    ok = await client.options(
        "/api/v1/visits",
        headers={**HEADERS, "Access-Control-Request-Method": "POST"},
    )
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    bad = await client.options("/api/v1/visits", headers={"Origin": "https://evil.test"})
    assert bad.status == 403


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", HEADERS, 400),
        (b"[1, 2]", HEADERS, 400),
        (b'{"site": 5, "url": "https://shop.test/"}', HEADERS, 400),
        (b'{"site": "main", "url": "javascript:alert(1)"}', HEADERS, 400),
        (b'{"site": "main"}', HEADERS, 400),
        (b'{"site": "main", "url": "https://shop.test/", "dnt": "yes"}', HEADERS, 400),
        # control characters no browser sends unencoded (PostgreSQL refuses the NUL)
        (b'{"site": "main", "url": "https://shop.test/\\u0000"}', HEADERS, 400),
        (b'{"site": "main", "url": "https://shop.test/\\n"}', HEADERS, 400),
        (b'{"site": "main", "url": "https://shop.test/", "referrer": "\\u0000"}', HEADERS, 400),
        (b"\xff\xfe\x00garbage", HEADERS, 400),
        (b'{"site": "nope", "url": "https://shop.test/"}', HEADERS, 403),
        (b'{"site": "main", "url": "https://shop.test/"}', {}, 403),
        (b'{"site": "main", "url": "https://shop.test/"}', {"Origin": "https://evil.test"}, 403),
        (b'{"site": "main", "url": "https://shop.test/?' + b"a" * 4096 + b'"}', HEADERS, 413),
    ],
)
async def test_hostile_visits_get_a_clear_4xx(
    client: Client, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = await client.post("/api/v1/visits", data=body, headers=headers)
    assert response.status == status
    assert "error" in await response.json()


async def test_oversize_body_by_header_is_refused_before_reading(client: Client) -> None:
    response = await client.post(
        "/api/v1/visits", data=b"{}" * 5000, headers={**HEADERS, "Content-Type": "text/plain"}
    )
    assert response.status == 413


@pytest.mark.parametrize(
    "path",
    ["/api/v1/visits/../../etc/passwd/ping", "/api/v1/visits/%00/ping", "/api/v1/visits/x/ping"],
)
async def test_pings_of_unknown_sessions_are_404(client: Client, path: str) -> None:
    response = await client.post(path, json={"visitor_id": "a" * 32}, headers=HEADERS)
    assert response.status == 404


async def test_a_ping_with_a_nul_in_its_page_is_a_400(client: Client) -> None:
    first = await (await visit(client)).json()
    response = await client.post(
        f"/api/v1/visits/{first['session_id']}/ping",
        data=b'{"visitor_id": "%s", "url": "https://shop.test/a\\u0000b"}'
        % first["visitor_id"].encode(),
        headers=HEADERS,
    )
    assert response.status == 400 and "url" in str(await response.json())


async def test_ping_from_another_origin_is_refused(client: Client) -> None:
    first = await (await visit(client)).json()
    response = await client.post(
        f"/api/v1/visits/{first['session_id']}/ping",
        json={"visitor_id": first["visitor_id"]},
        headers={"Origin": "https://evil.test"},
    )
    assert response.status == 403


async def test_text_plain_body_works_so_the_widget_avoids_a_preflight(client: Client) -> None:
    response = await client.post(
        "/api/v1/visits",
        data=b'{"site": "main", "url": "https://shop.test/"}',
        headers={**HEADERS, "Content-Type": "text/plain"},
    )
    assert response.status == 200


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc", "Bearer "])
async def test_staff_api_needs_a_valid_token(client: Client, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    for path in ("/api/v1/calls", "/api/v1/leases"):
        response = await client.get(path, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_calls_list_schema_and_filters(client: Client) -> None:
    response = await client.get(
        "/api/v1/calls?since=2026-01-01T00:00:00&source=google", headers=STAFF
    )
    assert response.status == 200
    assert await response.json() == {"total": 0, "calls": []}
    bad = await client.get("/api/v1/calls?since=yesterday", headers=STAFF)
    assert bad.status == 400 and "since" in (await bad.json())["error"]
    bad = await client.get("/api/v1/calls?limit=-1", headers=STAFF)
    assert bad.status == 400


async def test_health_and_metrics(client: Client) -> None:
    await visit(client)
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["database"] == "ok"
    metrics = await (await client.get("/metrics")).text()
    assert 'calltrack_visits_total{site="main",tracking="tracked"} 1.0' in metrics


async def test_widget_script_is_served(client: Client) -> None:
    response = await client.get("/widget.js")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/javascript")


async def test_privacy_signal_is_respected_when_configured(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(tmp_path)
    site = settings.sites[0].model_copy(update={"respect_privacy_signals": True})
    settings = settings.model_copy(update={"sites": [site]})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    response = await client.post(
        "/api/v1/visits", json={"site": "main", "url": PAID}, headers={**HEADERS, "Sec-GPC": "1"}
    )
    assert (await response.json())["numbers"] == []


async def test_a_signal_turned_on_mid_session_ends_the_tracked_session(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """GPC switched on (or DNT sent by the page) with a tracked session going: the session was
    continued, its number kept and its page views stored. It ends there; a session without
    numbers begins, and goes on while the signal stays."""
    settings = settings_for(tmp_path)
    site = settings.sites[0].model_copy(update={"respect_privacy_signals": True})
    settings = settings.model_copy(update={"sites": [site]})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    tracked = await (
        await client.post("/api/v1/visits", json={"site": "main", "url": PAID}, headers=HEADERS)
    ).json()
    assert tracked["numbers"] != []
    ids = {"session_id": tracked["session_id"], "visitor_id": tracked["visitor_id"]}
    page = {"site": "main", "url": "https://shop.test/prices", **ids}
    signalled = await client.post("/api/v1/visits", json=page, headers={**HEADERS, "Sec-GPC": "1"})
    private = await signalled.json()
    assert private["numbers"] == [] and private["session_id"] != tracked["session_id"]
    again = {**page, "session_id": private["session_id"], "url": "https://shop.test/about"}
    still = await (
        await client.post("/api/v1/visits", json=again, headers={**HEADERS, "DNT": "1"})
    ).json()
    assert still["session_id"] == private["session_id"] and still["numbers"] == []


async def test_a_crawler_gets_the_sites_own_numbers_and_nothing_is_stored(client: Client) -> None:
    """Googlebot renders pages with JavaScript: each crawl took a number for the freeze time
    (a big site's crawl drained the pools) and made a session in the reports."""
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    for _ in range(3):  # the paid pool has two numbers
        response = await client.post(
            "/api/v1/visits",
            json={"site": "main", "url": PAID},
            headers={**HEADERS, "User-Agent": googlebot},
        )
        assert response.status == 200
        body = await response.json()
        assert body["numbers"] == [] and body["session_id"] is None
    async with client.app[ENGINE].connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(sessions)) == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'calltrack_crawler_visits_total{site="main"} 3.0' in metrics
    person = await (await visit(client)).json()  # the pool is whole for the visitors
    assert person["numbers"] and person["session_id"]


async def test_an_exhausted_pool_answers_the_fallback_number_formatted(client: Client) -> None:
    for _ in range(2):  # the paid pool has two numbers
        await visit(client)
    body = await (await visit(client)).json()
    assert [(n["replace"], n["number"], n["display"]) for n in body["numbers"]] == [
        ("+7 (495) 123-45-67", "+74990000099", "+7 (499) 000-00-99"),
        ("8 495 1234567", "+74990000099", "8 499 0000099"),
    ]


async def test_two_own_numbers_get_two_tracking_numbers(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    site = settings_for(tmp_path).sites[0].model_dump(mode="json")
    site["replace"] = ["+7 (495) 123-45-67", "+7 (495) 555-00-11"]
    site["pools"] = [
        {"name": "sales", "replaces": ["+74951234567"], "numbers": ["+74990000001"]},
        {
            "name": "service",
            "replaces": ["+74955550011"],
            "numbers": ["+74990000021"],
            "forward_to": "PJSIP/service",
        },
    ]
    settings = settings_for(tmp_path, sites=[site])
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    body = await (await visit(client)).json()
    assert [(n["replace"], n["display"]) for n in body["numbers"]] == [
        ("+7 (495) 123-45-67", "+7 (499) 000-00-01"),
        ("+7 (495) 555-00-11", "+7 (499) 000-00-21"),
    ]


async def test_one_network_cannot_start_visits_without_bound(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(
        tmp_path, http={"max_new_visits_per_ip": 3, "trusted_proxies": ["127.0.0.1"]}
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))

    async def from_(address: str, **body: Any) -> ClientResponse:
        return await client.post(
            "/api/v1/visits",
            json={"site": "main", "url": PAID, **body},
            headers={**HEADERS, "X-Forwarded-For": address},
        )

    first = await (await from_("2001:db8::1")).json()
    for i in range(2):
        assert (await from_(f"2001:db8::{i + 2}")).status == 200  # the same /64
    refused = await from_("2001:db8::9")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    assert "too many new visits" in (await refused.json())["error"]
    # the visits already started go on; another network is not affected
    again = await from_(
        "2001:db8::1", visitor_id=first["visitor_id"], session_id=first["session_id"]
    )
    assert again.status == 200 and (await again.json())["session_id"] == first["session_id"]
    assert (await from_("2001:db8:0:1::1")).status == 200


async def test_one_network_cannot_keep_page_views_without_bound(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Each session keeps up to visits.max_page_views; the sessions one network started keep up
    to http.max_page_views_per_ip an hour together, and the views past it are counted, not kept
    (and in /metrics, by reason). A session's views count against the network it started from,
    whatever address pings."""
    settings = settings_for(
        tmp_path,
        http={"max_page_views_per_ip": 3, "trusted_proxies": ["127.0.0.1"]},
        visits={"max_page_views": 3},
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))

    async def start(address: str, **body: Any) -> dict[str, Any]:
        response = await client.post(
            "/api/v1/visits",
            json={"site": "main", "url": PAID, **body},
            headers={**HEADERS, "X-Forwarded-For": address},
        )
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    async def view(address: str, visit: dict[str, Any], page: str) -> None:
        response = await client.post(
            f"/api/v1/visits/{visit['session_id']}/ping",
            json={"visitor_id": visit["visitor_id"], "url": f"https://shop.test/{page}"},
            headers={**HEADERS, "X-Forwarded-For": address},
        )
        assert response.status == 200, await response.text()

    first, second = await start("2001:db8::1"), await start("2001:db8::2")  # one /64
    for page in ("a", "b"):
        await view("2001:db8::1", first, page)
        await view("203.0.113.9", second, page)  # from elsewhere: still the /64's budget
    # the same session's next page load from the network, its budget spent
    await start(
        "2001:db8::1",
        visitor_id=first["visitor_id"],
        session_id=first["session_id"],
        url="https://shop.test/c",
    )
    other = await start("198.51.100.7")
    await view("198.51.100.7", other, "a")
    await client.app[VISITS].flush()
    async with client.app[ENGINE].connect() as conn:
        rows = await conn.execute(
            select(sessions.c.id, sessions.c.pages_viewed, func.count(page_views.c.id))
            .join(page_views, page_views.c.session_id == sessions.c.id)
            .group_by(sessions.c.id, sessions.c.pages_viewed)
        )
        kept = {r[0]: (r[1], r[2]) for r in rows}
    # (viewed, kept): each landing page is kept with its new session; then 3 of the network's
    # 5 later views (first a, second a, first b), none of its later ones; the other network's
    assert kept == {
        first["session_id"]: (4, 3),
        second["session_id"]: (3, 2),
        other["session_id"]: (2, 2),
    }
    metrics = await (await client.get("/metrics")).text()
    # first's c: its session's third view kept already; second's b: the network's budget
    assert 'calltrack_page_views_not_kept_total{reason="session_limit"} 1.0' in metrics
    assert 'calltrack_page_views_not_kept_total{reason="network_budget"} 1.0' in metrics


async def _ad_ids(client: Client, session_id: str) -> tuple[str | None, str | None]:
    async with client.app[ENGINE].connect() as conn:
        row = (
            await conn.execute(
                select(sessions.c.ga_client_id, sessions.c.ym_client_id).where(
                    sessions.c.id == session_id
                )
            )
        ).one()
    return row.ga_client_id, row.ym_client_id


async def test_ad_platform_client_ids_are_stored_with_the_session(client: Client) -> None:
    body = await (
        await visit(client, ga_client_id="1234567890.1700000000", ym_client_id="17000000001234")
    ).json()
    assert await _ad_ids(client, body["session_id"]) == (
        "1234567890.1700000000",
        "17000000001234",
    )


async def test_client_ids_set_after_the_first_page_are_filled_in_later(client: Client) -> None:
    first = await (await visit(client)).json()
    assert await _ad_ids(client, first["session_id"]) == (None, None)
    ids = {"visitor_id": first["visitor_id"], "session_id": first["session_id"]}
    second = await (await visit(client, **ids, ga_client_id="99.1700000001")).json()
    assert second["session_id"] == first["session_id"]
    await visit(client, **ids, ga_client_id="11.1700000002", ym_client_id="5551")
    # the first id the session learnt is kept; the missing one is filled in
    assert await _ad_ids(client, first["session_id"]) == ("99.1700000001", "5551")


@pytest.mark.parametrize(
    ("ga", "ym"),
    [
        ("GA1.1.1234567890.1700000000", "17000000001234x"),  # the raw cookie is not an id
        ("1" * 30 + ".1", "1" * 40),  # longer than any the platforms write
        ("<script>.1", "-1"),
        (12345, 17000000001234),  # not strings
        ({"a": 1}, ["1"]),
    ],
)
async def test_bad_client_ids_are_dropped_not_refused(client: Client, ga: Any, ym: Any) -> None:
    response = await visit(client, ga_client_id=ga, ym_client_id=ym)
    assert response.status == 200
    assert await _ad_ids(client, (await response.json())["session_id"]) == (None, None)


async def test_no_client_ids_are_kept_for_a_visitor_asking_not_to_be_tracked(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(tmp_path)
    site = settings.sites[0].model_copy(update={"respect_privacy_signals": True})
    settings = settings.model_copy(update={"sites": [site]})
    await migrate(settings)
    private = await aiohttp_client(build_app(settings, clock=FakeClock()))
    response = await private.post(
        "/api/v1/visits",
        json={"site": "main", "url": PAID, "dnt": True, "ga_client_id": "1.2"},
        headers=HEADERS,
    )
    assert await _ad_ids(private, (await response.json())["session_id"]) == (None, None)


async def test_a_body_in_two_packets_is_read_whole(client: Client) -> None:
    """A proxy or a slow mobile link may send the body apart from the headers, or in pieces:
    the visit is read whole, not cut at the first piece (which would be a 400)."""
    body = b'{"site": "main", "url": "https://shop.test/?utm_source=split"}'
    head = (
        f"POST /api/v1/visits HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        f"Origin: {ORIGIN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + body[:20])
        await writer.drain()
        await asyncio.sleep(0.2)  # the server has read the first piece by now
        writer.write(body[20:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"session_id"' in answer


async def test_what_startup_built_is_out_of_the_full_collections(client: Client) -> None:
    """`calltrack serve`'s last startup step: a full collection no longer walks the objects
    startup leaves for the process's life (pauses of ~64 ms under visitor traffic)."""
    assert gc.get_freeze_count() == 0
    try:
        await freeze_startup_heap(client.app)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


async def test_no_route_is_a_404_or_405_in_the_kind_of_the_path(client: Client) -> None:
    """No middleware runs the errors (pbx.app): the last route answers what none matched."""
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status == 404 and "error" in await missing.json()
    wrong_method = await client.delete("/api/v1/visits", headers=HEADERS)
    assert wrong_method.status == 405 and "error" in await wrong_method.json()
    assert "POST" in wrong_method.headers["Allow"]
    page = await client.get("/no-such-page")
    assert page.status == 404 and page.content_type == "text/html"
    assert "<html" in (await page.text()).lower()


async def test_a_bug_in_a_ping_is_a_logged_json_500(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = await (await visit(client)).json()

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app[VISITS], "ping", broken)
    response = await client.post(
        f"/api/v1/visits/{first['session_id']}/ping",
        json={"visitor_id": first["visitor_id"]},
        headers=HEADERS,
    )
    assert response.status == 500
    assert (await response.json()) == {"error": "internal error; it has been logged"}
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # not a CORS error
    assert "a bug" in caplog.text


def _visit_head(client: Client, length: int) -> bytes:
    return (
        f"POST /api/v1/visits HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        f"Origin: {ORIGIN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_a_body_that_stops_coming_is_a_408_not_a_logged_bug(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pbx.http, "BODY_SECONDS", 0.3)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(_visit_head(client, 100) + b'{"site": "main"')
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(300), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert "unhandled error" not in caplog.text


async def test_a_body_broken_off_is_the_clients_400(client: Client) -> None:
    """aiohttp fails the body's stream when the connection is lost or the chunked encoding
    breaks: the client's 400, not a logged bug."""
    for failure in (ConnectionResetError("Connection lost"), ContentLengthError("cut short")):
        payload = StreamReader(
            mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop()
        )
        payload.feed_data(b'{"site": ')
        payload.set_exception(failure)
        request = make_mocked_request("POST", "/api/v1/visits", app=client.app, payload=payload)
        with pytest.raises(web.HTTPBadRequest):
            await pbx.http.read_body(request)


def _arrived(client: Client, body: bytes, failure: Exception | None = None) -> web.Request:
    """A request whose whole body came with its headers, with no Content-Length (chunked)."""
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    if failure is not None:
        payload.set_exception(failure)
    return make_mocked_request("POST", "/api/v1/visits", app=client.app, payload=payload)


async def test_a_body_that_came_whole_is_read_at_once_within_the_limit(client: Client) -> None:
    """The path every ping takes (read_nowait): the same limit and the same 400 as when the
    body comes in pieces."""
    limit = client.app[SETTINGS].http.max_body_bytes
    assert await pbx.http.read_body(_arrived(client, b'{"visitor_id": "x"}')) == (
        b'{"visitor_id": "x"}'
    )
    assert await pbx.http.read_body(_arrived(client, b"")) == b""
    with pytest.raises(web.HTTPRequestEntityTooLarge):
        await pbx.http.read_body(_arrived(client, b" " * (limit + 1)))
    with pytest.raises(web.HTTPBadRequest):
        await pbx.http.read_body(_arrived(client, b"{}", ContentLengthError("cut short")))
