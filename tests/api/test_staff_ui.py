"""The staff pages through a real aiohttp server: logins, sessions, CSRF, the call log, the review
form, CSV, and the recording endpoint (Range, sessions, traversal)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from attribution.calls import CallReport
from pbx.app import build_app
from pbx.auth import hash_password
from pbx.keys import CALLS
from pbx.storage.calls import CallFilter
from tests.helpers import PASSWORD, STAFF_TOKEN, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
STATIC = "+74990000101"  # tests/helpers: the static number of source "billboard"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    (tmp_path / "rec").mkdir()
    settings = settings_for(tmp_path, users=staff_users(), recordings={"dir": "rec"})
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=clock))


async def store_call(
    client: Client,
    linkedid: str,
    *,
    caller: str = "+79161234567",
    did: str = STATIC,
    answered: bool = True,
    at: float = 1_800_000_000.0,
    recording: str | None = None,
) -> int:
    """A call as the AMI bridge reports it; returns its id."""
    report = CallReport(
        linkedid=linkedid,
        caller=caller,
        did=did,
        started_at=at,
        ended_at=at + 40,
        answered_at=at + 5 if answered else None,
        dial_status="ANSWER" if answered else "NOANSWER",
        recording=recording,
    )
    store = client.app[CALLS]
    assert await store.store(report)
    _total, rows = await store.list(CallFilter(limit=1000))
    return int(next(r["id"] for r in rows if r["linkedid"] == linkedid))


async def login_csrf(client: Client) -> str:
    page = await client.get("/login")
    assert page.status == 200
    match = CSRF_FIELD.search(await page.text())
    assert match
    return match.group(1)


async def log_in(client: Client, name: str = "ada", password: str = PASSWORD) -> ClientResponse:
    csrf = await login_csrf(client)
    return await client.post(
        "/login",
        data={"csrf": csrf, "name": name, "password": password, "next": "/calls"},
        allow_redirects=False,
    )


def session_cookie(client: Client) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == "calltrack_session":
            return cookie.value
    return None


def use_session(client: Client, token: str) -> None:
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"calltrack_session": token})


async def page_csrf(client: Client, path: str) -> str:
    match = CSRF_FIELD.search(await (await client.get(path)).text())
    assert match
    return match.group(1)


# --- logging in and out --------------------------------------------------------------------


async def test_login_sets_an_httponly_samesite_session_and_lands_on_the_calls(
    client: Client,
) -> None:
    response = await log_in(client)
    assert response.status == 303 and response.headers["Location"] == "/calls"
    set_cookie = next(
        h for h in response.headers.getall("Set-Cookie") if h.startswith("calltrack_session=")
    )
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http here; see the https test below
    page = await client.get("/calls")
    assert page.status == 200 and "ada" in await page.text()
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_cookie_is_secure_when_the_public_url_is_https(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(
        tmp_path, users=staff_users(), http={"public_url": "https://calls.example"}
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    form = await client.get("/login")
    assert "Secure" in form.headers["Set-Cookie"]  # so this http client will not send it back:
    csrf = CSRF_FIELD.search(await form.text())
    assert csrf
    response = await client.post(
        "/login",
        data={"csrf": csrf.group(1), "name": "ada", "password": PASSWORD},
        headers={"Cookie": f"calltrack_login_csrf={csrf.group(1)}"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert any(
        h.startswith("calltrack_session=") and "Secure" in h
        for h in response.headers.getall("Set-Cookie")
    )


@pytest.mark.parametrize(
    ("trusted", "proto", "secure"),
    [(["127.0.0.1"], "https", True), (["127.0.0.1"], "http", False), ([], "https", False)],
)
async def test_cookie_is_secure_behind_a_trusted_https_proxy(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    trusted: list[str],
    proto: str,
    secure: bool,
) -> None:
    """X-Forwarded-Proto counts only from a configured proxy (anyone can send the header)."""
    settings = settings_for(tmp_path, users=staff_users(), http={"trusted_proxies": trusted})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    form = await client.get("/login", headers={"X-Forwarded-Proto": proto})
    assert ("Secure" in form.headers["Set-Cookie"]) is secure


@pytest.mark.parametrize(("name", "password"), [("ada", "wrong"), ("nobody", PASSWORD), ("", "")])
async def test_wrong_credentials_give_no_session(client: Client, name: str, password: str) -> None:
    response = await log_in(client, name, password)
    assert response.status == 401
    assert "Wrong user name or password" in await response.text()
    assert session_cookie(client) is None
    assert (await client.get("/calls", allow_redirects=False)).status == 303


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
async def test_login_without_the_forms_csrf_token_is_refused(
    client: Client, csrf: str | None
) -> None:
    await login_csrf(client)  # the browser has the cookie; the form's field is missing/wrong
    data = {"name": "ada", "password": PASSWORD}
    if csrf is not None:
        data["csrf"] = csrf
    response = await client.post("/login", data=data, allow_redirects=False)
    assert response.status == 403
    assert "CSRF" in await response.text()
    assert session_cookie(client) is None


async def test_failed_logins_are_limited_then_allowed_again(
    client: Client, clock: FakeClock
) -> None:
    for _ in range(10):
        assert (await log_in(client, "ada", "guess")).status == 401
    blocked = await log_in(client, "ada", PASSWORD)  # even the right password waits
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in await blocked.text()
    assert session_cookie(client) is None
    clock.advance(301)
    assert (await log_in(client, "ada", PASSWORD)).status == 303


async def test_login_always_starts_a_new_session(client: Client) -> None:
    """Session fixation: a session id planted before the login never becomes a logged-in one."""
    client.session.cookie_jar.update_cookies({"calltrack_session": "planted-by-attacker"})
    first = (await log_in(client)).cookies["calltrack_session"].value
    assert first and first != "planted-by-attacker"
    second = (await log_in(client)).cookies["calltrack_session"].value
    assert second and second != first
    use_session(client, second)
    assert (await client.get("/calls", allow_redirects=False)).status == 200
    use_session(client, first)
    assert (await client.get("/calls", allow_redirects=False)).status == 303, "old session ended"


async def test_logout_needs_csrf_and_ends_the_session(client: Client) -> None:
    token = (await log_in(client)).cookies["calltrack_session"].value
    use_session(client, token)
    assert (await client.get("/calls", allow_redirects=False)).status == 200
    assert (await client.post("/logout", data={}, allow_redirects=False)).status == 403
    csrf = await page_csrf(client, "/calls")
    response = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login"
    use_session(client, token)  # the old cookie, replayed
    assert (await client.get("/calls", allow_redirects=False)).status == 303


async def test_an_active_session_still_ends_after_session_max(
    client: Client, clock: FakeClock
) -> None:
    token = (await log_in(client)).cookies["calltrack_session"].value
    use_session(client, token)
    for _ in range(65):  # in use every 11 h (under session_idle) for 29.8 days
        clock.advance(11 * 3600)
        assert (await client.get("/calls", allow_redirects=False)).status == 200
    clock.advance(11 * 3600)  # past 30 days (ui.session_max's default) since the login
    assert (await client.get("/calls", allow_redirects=False)).status == 303


async def test_a_new_password_in_the_config_ends_that_users_sessions(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(tmp_path, users=staff_users())
    await migrate(settings)
    before = await aiohttp_client(build_app(settings, clock=clock))
    ada = (await log_in(before, "ada")).cookies["calltrack_session"].value
    before.session.cookie_jar.clear()  # a login ends the session it is sent with
    sam = (await log_in(before, "sam")).cookies["calltrack_session"].value
    users = [
        {**u, "password_argon2": hash_password("a new password")} if u["name"] == "ada" else u
        for u in staff_users()
    ]
    after = await aiohttp_client(build_app(settings_for(tmp_path, users=users), clock=clock))
    use_session(before, ada)
    assert (await before.get("/calls", allow_redirects=False)).status == 200
    await before.close()
    use_session(after, ada)
    assert (await after.get("/calls", allow_redirects=False)).status == 303
    use_session(after, sam)
    assert (await after.get("/calls", allow_redirects=False)).status == 200


@pytest.mark.parametrize(
    "target", ["//evil.test/", "https://evil.test/", "/\\evil.test", "calls", "//[", "http://[x"]
)
async def test_login_never_redirects_to_another_site(client: Client, target: str) -> None:
    """A host urlsplit cannot read ("//[") was a 500 with a traceback, on the form's GET and
    on a good login's POST (its session made, no cookie sent)."""
    form = await client.get("/login", params={"next": target})
    assert form.status == 200
    csrf = await login_csrf(client)
    response = await client.post(
        "/login",
        data={"csrf": csrf, "name": "ada", "password": PASSWORD, "next": target},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/"  # the dashboard


@pytest.mark.parametrize(
    "path", ["/calls", "/calls/1", "/calls.csv", "/calls/live?after=0", "/admin"]
)
async def test_pages_send_anonymous_visitors_to_the_login(client: Client, path: str) -> None:
    response = await client.get(path, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")


async def test_staff_cannot_reach_the_admin_page(client: Client) -> None:
    await log_in(client, "sam")
    assert (await client.get("/calls")).status == 200
    response = await client.get("/admin")
    assert response.status == 403
    assert "for admins" in await response.text()
    await log_in(client, "ada")
    admin = await client.get("/admin")
    assert admin.status == 200 and "Configuration status" in await admin.text()


# --- the call log, the review form, CSV -----------------------------------------------------


async def test_review_is_saved_and_the_log_filters_by_tag(client: Client) -> None:
    lead = await store_call(client, "l1")
    await store_call(client, "l2", caller="+79035550101")
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{lead}")
    form = {"csrf": csrf, "tag": "lead", "score": "4", "sale": "1 500,50", "notes": "wants a quote"}
    saved = await client.post(f"/calls/{lead}", data=form, allow_redirects=False)
    assert saved.status == 303 and saved.headers["Location"] == f"/calls/{lead}?saved=1"
    call = await client.app[CALLS].get(lead)
    assert call is not None
    assert (call["tags"], call["score"], call["sale_cents"]) == (["lead"], 4, 150050)
    assert (call["notes"], call["reviewed_by"]) == ("wants a quote", "ada")
    tagged = await (await client.get("/calls?tag=lead")).text()
    assert "+79161234567" in tagged and "+79035550101" not in tagged


@pytest.mark.parametrize(("typed", "cents"), [("1.234,56", 123456), ("1,234.56", 123456)])
async def test_the_forms_sale_amount_is_read_as_every_other_amount(
    client: Client, typed: str, cents: int
) -> None:
    """The form had a rule of its own: "1.234,56" (a German or Russian spreadsheet's copy) was
    refused here while the CRM API and the cost files read it (attribution.money)."""
    call = await store_call(client, "l1")
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{call}")
    saved = await client.post(
        f"/calls/{call}", data={"csrf": csrf, "sale": typed}, allow_redirects=False
    )
    assert saved.status == 303
    stored = await client.app[CALLS].get(call)
    assert stored is not None and stored["sale_cents"] == cents


SEEN_FIELD = re.compile(r'name="seen" value="([^"]+)"')


async def test_a_review_changed_since_the_page_was_opened_is_not_overwritten(
    client: Client,
) -> None:
    """The form put back every field it showed: a CRM's sale PATCHed (or the speech worker's
    tag added) after the page opened was lost, unseen, at the next save."""
    call = await store_call(client, "l1")
    await log_in(client)
    page = await (await client.get(f"/calls/{call}")).text()
    csrf, seen = CSRF_FIELD.search(page), SEEN_FIELD.search(page)
    assert csrf and seen
    crm = await client.patch(
        f"/api/v1/calls/{call}",
        json={"sale_amount": "9000"},
        headers={"Authorization": f"Bearer {STAFF_TOKEN}"},
    )
    assert crm.status == 200
    form = {"csrf": csrf.group(1), "seen": seen.group(1), "tag": "lead", "notes": "mine"}
    refused = await client.post(f"/calls/{call}", data=form, allow_redirects=False)
    text = await refused.text()
    assert refused.status == 409 and "changed by staff while the page was open" in text
    stored = await client.app[CALLS].get(call)
    assert stored is not None and (stored["sale_cents"], stored["notes"]) == (900000, None)
    assert ">mine</textarea>" in text  # the form keeps what this user typed
    again = SEEN_FIELD.search(text)
    assert again and again.group(1) != seen.group(1)
    saved = await client.post(f"/calls/{call}", data={**form, "seen": again.group(1)})
    assert saved.status == 200  # followed to the page: saved on purpose, the second time
    stored = await client.app[CALLS].get(call)
    assert stored is not None and (stored["notes"], stored["sale_cents"]) == ("mine", None)


async def test_review_without_csrf_is_refused(client: Client) -> None:
    call = await store_call(client, "l1")
    await log_in(client)
    for data in ({"tag": "lead"}, {"tag": "lead", "csrf": "forged"}):
        response = await client.post(f"/calls/{call}", data=data, allow_redirects=False)
        assert response.status == 403
    stored = await client.app[CALLS].get(call)
    assert stored is not None and stored["tags"] == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score", "7", "Score"),
        ("sale", "lots", "Sale amount"),
        ("sale", "1.234", "Sale amount"),
        ("sale", "1.500", "may be read two ways"),
        ("sale", "-5", "Sale amount"),
        ("tag", "vip", "Unknown tag"),
        ("notes", "x" * 5001, "Notes"),
    ],
)
async def test_bad_review_input_is_a_400_that_says_why(
    client: Client, field: str, value: str, message: str
) -> None:
    call = await store_call(client, "l1")
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{call}")
    response = await client.post(f"/calls/{call}", data={"csrf": csrf, field: value})
    assert response.status == 400
    assert message in await response.text()


async def test_log_filters_and_bad_filters(client: Client) -> None:
    day = 86400.0
    await store_call(client, "a", caller="+79161234567", at=1_800_000_000.0)
    await store_call(client, "m", caller="+79035550101", answered=False, at=1_800_000_000.0 - day)
    await store_call(
        client, "u", caller="+74957654321", did="+74990000011", at=1_800_000_000 - 9 * day
    )
    await log_in(client)

    async def callers(query: str) -> set[str]:
        response = await client.get("/calls?" + query)
        assert response.status == 200, query
        return set(re.findall(r">(\+\d{11})</a>", await response.text()))

    assert await callers("") == {"+79161234567", "+79035550101", "+74957654321"}
    assert await callers("status=missed") == {"+79035550101"}
    assert await callers("status=answered&static=billboard") == {"+79161234567"}
    assert await callers("caller=555+01") == {"+79035550101"}
    assert await callers("source=billboard&medium=offline") == {"+79161234567", "+79035550101"}
    assert await callers("from=2027-01-14&to=2027-01-15") == {"+79161234567", "+79035550101"}
    assert await callers("to=2027-01-10") == {"+74957654321"}
    for bad in ("page=0", "page=x", "from=yesterday", "status=maybe", "source=" + "x" * 600):
        response = await client.get("/calls?" + bad)
        assert response.status == 400, bad
        assert "<h1>400" in await response.text()


async def test_live_rows_are_the_calls_stored_since(client: Client) -> None:
    first = await store_call(client, "a")
    await log_in(client)
    empty = await (await client.get(f"/calls/live?after={first}")).json()
    assert empty["count"] == 0 and empty["newest_id"] == first
    second = await store_call(client, "b", caller="+79035550101")
    await store_call(client, "c", caller="+79268889900", answered=False)
    live = await (await client.get(f"/calls/live?after={first}&status=answered")).json()
    assert live["count"] == 1 and live["newest_id"] == second
    assert "+79035550101" in live["html"] and "+79268889900" not in live["html"]
    assert (await client.get("/calls/live?after=x")).status == 400


async def test_csv_export_has_every_filtered_call_and_defuses_formulas(client: Client) -> None:
    kept = await store_call(client, "a", caller="+79161234567")
    await store_call(client, "b", caller="+79035550101", answered=False)
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{kept}")
    await client.post(
        f"/calls/{kept}",
        data={"csrf": csrf, "tag": ["lead", "sale"], "notes": "=HYPERLINK(1)", "sale": "99"},
    )
    response = await client.get("/calls.csv?status=answered")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert [r["caller"] for r in rows] == ["+79161234567"]
    assert rows[0]["tags"] == "lead, sale" and rows[0]["sale_amount"] == "99.00"
    assert rows[0]["notes"] == "'=HYPERLINK(1)"
    assert rows[0]["source"] == "billboard" and rows[0]["started_at"].startswith("2027-01-15T")


def before_second_batch(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
    meanwhile: Callable[[], Awaitable[None]],
) -> None:
    """The CSV export in batches of `batch` calls, `meanwhile` run before it reads its second."""
    from pbx.staff_ui import views

    monkeypatch.setattr(views, "EXPORT_BATCH", batch)
    store = client.app[CALLS]
    real = store.list
    batches = 0

    async def list_in_batches(where: CallFilter) -> Any:
        nonlocal batches
        batches += 1
        if batches == 2:
            await meanwhile()
        return await real(where)

    monkeypatch.setattr(store, "list", list_in_batches)


async def test_a_call_stored_during_the_export_neither_repeats_nor_drops_a_row(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export read its batches by offset: a call stored while it ran shifted every later
    batch by one, so a row was written twice at each boundary and the oldest was left out."""
    ids = [await store_call(client, f"c{i}", at=1_800_000_000.0 + 60 * i) for i in range(5)]

    async def a_new_call() -> None:
        await store_call(client, "new", at=1_800_000_000.0 + 3600)

    before_second_batch(client, monkeypatch, 2, a_new_call)
    await log_in(client)
    response = await client.get("/calls.csv")
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert [int(r["id"]) for r in rows] == sorted(ids, reverse=True)


async def test_an_export_that_fails_midway_breaks_the_download_not_writes_a_500_into_it(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a later batch came back as a JSON 500 written inside the CSV already under way,
    and the connection was left open: the browser waited for the rest of the file forever."""
    import aiohttp

    for i in range(3):
        await store_call(client, f"c{i}", at=1_800_000_000.0 + 60 * i)

    async def a_bug() -> None:
        raise RuntimeError("a bug in the second batch")

    before_second_batch(client, monkeypatch, 1, a_bug)
    await log_in(client)
    response = await client.get("/calls.csv")
    assert response.status == 200  # the headers went with the first batch
    async with asyncio.timeout(5):  # not left waiting
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_a_wrong_password_keeps_where_the_login_was_going(client: Client) -> None:
    """The form after a wrong password took `next` from the query string, which a POST to
    /login has not: the page the user came for was lost."""
    page = await client.get("/login?next=/calls/1")
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert csrf is not None
    refused = await client.post(
        "/login",
        data={"csrf": csrf.group(1), "name": "ada", "password": "wrong", "next": "/calls/1"},
    )
    assert refused.status == 401
    assert 'name="next" value="/calls/1"' in await refused.text()


async def test_a_head_of_the_csv_export_is_refused_not_answered_with_its_body(
    client: Client,
) -> None:
    """The streamed export has no length to announce: aiohttp wrote its rows after the HEAD's
    headers all the same, so the next response on the connection came after them (a proxy
    reusing the connection gave another request the call log)."""
    await store_call(client, "a", caller="+79161234567")
    await log_in(client)
    head = await client.head("/calls.csv")
    assert head.status == 405
    after = await client.get("/calls.csv")  # the same connection, in step
    assert after.status == 200 and "+79161234567" in (await after.read()).decode("utf-8-sig")


FORMULA_START = re.compile(r"^[\s\"]*[=+\-@]")
PLAIN_NUMBER = re.compile(r"^[\s\"]*[+-]?[0-9][0-9 .,()-]*\"?$")


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
async def test_csv_cells_cannot_start_a_formula_whatever_the_separator(
    client: Client, delimiter: str
) -> None:
    """A spreadsheet may split on `;` or tab (by locale) and ignore our quoting: every cell it
    can make from the file must still be text."""
    call = await store_call(client, "a", caller="+79161234567")
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{call}")
    notes = 'ok;=cmd|"/c calc"!A1, @SUM(1),+1+1\t-2+3;"=HYPERLINK(1)" ; =1\n=2\r-3+4\n@x;\'=y, "+z'
    response = await client.post(f"/calls/{call}", data={"csrf": csrf, "notes": notes})
    assert response.status == 200
    body = (await (await client.get("/calls.csv")).read()).decode("utf-8-sig")
    cells = [
        c for row in csv.reader(io.StringIO(body, newline=""), delimiter=delimiter) for c in row
    ]
    cells += re.split(f"[{delimiter}\r\n]", body)  # a reader that ignores quotes
    dangerous = [c for c in cells if FORMULA_START.match(c) and not PLAIN_NUMBER.match(c)]
    assert dangerous == []
    assert body.startswith('"id","started_at"'), "every cell is quoted"
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert rows[0]["caller"] == "+79161234567", "phone numbers stay as they are"

    def text(value: str) -> str:  # the notes, but for the defusing quotes and line endings
        return re.sub(r"\r\n?", "\n", value.replace("'", ""))

    assert text(rows[0]["notes"]) == text(notes)


# --- recordings -----------------------------------------------------------------------------


@pytest.fixture
async def recorded(client: Client, tmp_path: Path) -> int:
    (tmp_path / "rec" / "r1.mp3").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    return await store_call(client, "r1", recording="r1.mp3")


async def test_recording_needs_a_token_or_a_login(client: Client, recorded: int) -> None:
    url = f"/api/v1/calls/{recorded}/recording"
    anonymous = await client.get(url)
    assert anonymous.status == 401 and "error" in await anonymous.json()
    assert (await client.get(url, headers={"Authorization": f"Bearer {STAFF_TOKEN}"})).status == 200
    await log_in(client, "sam")
    response = await client.get(url)
    assert response.status == 200 and len(await response.read()) == 10240


async def test_recording_ranges_let_players_seek(client: Client, recorded: int) -> None:
    await log_in(client, "sam")
    url = f"/api/v1/calls/{recorded}/recording"
    part = await client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status == 206
    assert part.headers["Content-Range"] == "bytes 1000-1999/10240"
    assert await part.read() == (bytes(range(256)) * 40)[1000:2000]
    tail = await client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and len(await tail.read()) == 100
    beyond = await client.get(url, headers={"Range": "bytes=20000-"})
    assert beyond.status == 416
    # the same URL serves the WAV, then the MP3: a player asks again rather than mixing them
    # (aiohttp's If-Range takes a date only), and a revalidation of the same file is a 304
    whole = await client.get(url)
    assert whole.headers["Cache-Control"] == "private, no-cache"
    again = await client.get(url, headers={"If-None-Match": whole.headers["ETag"]})
    assert again.status == 304


async def test_recording_urls_use_the_public_url_not_the_host_header(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(tmp_path, http={"public_url": "https://calls.example/"})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    call = await store_call(client, "r", recording="r.mp3")
    response = await client.get(
        "/api/v1/calls", headers={"Authorization": f"Bearer {STAFF_TOKEN}", "Host": "evil.test"}
    )
    [listed] = (await response.json())["calls"]
    assert listed["recording_url"] == f"https://calls.example/api/v1/calls/{call}/recording"


@pytest.mark.parametrize(
    "stored_name",
    ["../calltrack.db", "/etc/passwd", "rec/../../calltrack.db", ".hidden", "x/y.mp3"],
)
async def test_recording_names_cannot_leave_the_folder(client: Client, stored_name: str) -> None:
    call = await store_call(client, "t", recording=stored_name)
    response = await client.get(
        f"/api/v1/calls/{call}/recording", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
    )
    assert response.status == 404
    assert (await response.json())["error"] == "the recording file is missing"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/calls/abc/recording",
        "/api/v1/calls/999/recording",
        "/api/v1/calls/..%2F..%2Fetc/recording",
    ],
)
async def test_recording_of_no_call_is_a_clear_404(client: Client, path: str) -> None:
    response = await client.get(path, headers={"Authorization": f"Bearer {STAFF_TOKEN}"})
    assert response.status == 404


async def test_missing_recording_file_is_a_clear_404(client: Client) -> None:
    call = await store_call(client, "gone", recording="gone.mp3")
    response = await client.get(
        f"/api/v1/calls/{call}/recording", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
    )
    assert response.status == 404
    assert (await response.json())["error"] == "the recording file is missing"


async def test_call_page_shows_the_player_and_duration(client: Client, recorded: int) -> None:
    await client.app[CALLS].replace_recording(recorded, "r1.mp3", "r1.mp3", 7.1, [10, 100, 50])
    await log_in(client, "sam")
    page = await (await client.get(f"/calls/{recorded}")).text()
    assert f'src="/api/v1/calls/{recorded}/recording"' in page
    assert "Length 0:07" in page and page.count("<rect") == 3
    assert (await client.get("/calls/999")).status == 404
