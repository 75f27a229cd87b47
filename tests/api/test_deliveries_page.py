"""The deliveries admin page (issue 14) through the real app on SQLite: admins only, newest
first, filtered by state, errors escaped; "Retry now" needs the page's CSRF token, makes a
failed delivery due now for another 24 h and wakes the worker; delivered ones are not retried."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from pbx.app import build_app
from pbx.keys import ENGINE, OUTBOX
from pbx.storage.tables import outbox
from tests.api.test_staff_ui import log_in, page_csrf, store_call
from tests.helpers import FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
HOOKS = [
    {"name": "crm", "url": "http://127.0.0.1:9/crm", "secret": "s" * 32},
    {"name": "b24", "url": "http://127.0.0.1:9/rest/1/k/", "secret": "s" * 32},
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    settings = settings_for(tmp_path, users=staff_users(), webhooks=HOOKS)
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    await store_call(client, "c1")  # outbox rows 1 (crm) and 2 (b24)
    clock.advance(60)
    await store_call(client, "c2", at=clock.now)  # rows 3 (crm) and 4 (b24)
    await set_row(client, 1, state="failed", attempts=9, last_status=500, last_error="<b>boom</b>")
    await set_row(client, 2, state="delivered", attempts=1, last_status=200, delivered_at=clock.now)
    await set_row(client, 3, state="skipped", last_error="no GA client id")
    return client


async def set_row(client: Client, row_id: int, **values: Any) -> None:
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


async def row(client: Client, row_id: int) -> Any:
    async with client.app[ENGINE].connect() as conn:
        return (await conn.execute(select(outbox).where(outbox.c.id == row_id))).one()


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


async def test_only_admins_see_the_deliveries(client: Client) -> None:
    anonymous = await client.get("/admin/deliveries", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login")
    await log_in(client, "sam")
    assert (await client.get("/admin/deliveries")).status == 403
    await log_in(client, "ada")
    page = await client.get("/admin/deliveries")
    assert page.status == 200
    html = await page.text()
    assert listed_ids(html) == [4, 3, 2, 1]  # newest first
    assert "&lt;b&gt;boom&lt;/b&gt;" in html and "<b>boom</b>" not in html
    assert "HTTP 500" in html and 'href="/calls/1"' in html
    admin = await (await client.get("/admin")).text()
    assert 'href="/admin/deliveries"' in admin


async def test_the_list_filters_by_state(client: Client) -> None:
    await log_in(client, "ada")
    failed = await (await client.get("/admin/deliveries?state=failed")).text()
    assert listed_ids(failed) == [1]
    assert listed_ids(await (await client.get("/admin/deliveries?state=pending")).text()) == [4]
    bad = await client.get("/admin/deliveries?state=lost")
    assert bad.status == 400 and "state: one of" in await bad.text()


async def test_retry_now_makes_a_failed_delivery_due_and_wakes_the_worker(
    client: Client, clock: FakeClock
) -> None:
    woken: list[int] = []
    client.app[OUTBOX].on_added(lambda: woken.append(1))
    await set_row(client, 1, claimed_until=clock.now + 30)  # an old claim, long run out
    before = await row(client, 1)
    await log_in(client, "ada")
    csrf = await page_csrf(client, "/admin/deliveries?state=failed")
    clock.advance(3600)
    done = await client.post(
        "/admin/deliveries",
        data={"csrf": csrf, "id": "1", "state": "failed"},
        allow_redirects=False,
    )
    assert done.status == 303
    assert done.headers["Location"] == "/admin/deliveries?state=failed&retried=1"
    retried = await row(client, 1)
    assert (retried.state, retried.due_at) == ("pending", clock.now)
    assert retried.claimed_until < clock.now  # (a live claim would be kept: never sent twice)
    # a failed delivery gets the retry window it first had, from now
    assert retried.give_up_at == clock.now + before.give_up_at - before.created_at
    assert woken == [1]
    page = await (await client.get(done.headers["Location"])).text()
    assert "Delivery 1 will be tried again now." in page


async def test_retry_needs_csrf_and_an_admin_and_something_to_retry(client: Client) -> None:
    await log_in(client, "sam")
    staff_csrf = await page_csrf(client, "/calls")
    staff = await client.post("/admin/deliveries", data={"csrf": staff_csrf, "id": "1"})
    assert staff.status == 403
    await log_in(client, "ada")
    forged = await client.post("/admin/deliveries", data={"csrf": "forged", "id": "1"})
    assert forged.status == 403 and "CSRF" in await forged.text()
    assert (await row(client, 1)).state == "failed"
    csrf = await page_csrf(client, "/admin/deliveries")
    delivered = await client.post("/admin/deliveries", data={"csrf": csrf, "id": "2"})
    assert delivered.status == 409 and (await row(client, 2)).state == "delivered"
    for bad in ("", "x", "0", "99999999999999"):
        response = await client.post("/admin/deliveries", data={"csrf": csrf, "id": bad})
        assert response.status == 400, bad
    assert (await client.post("/admin/deliveries", data={"csrf": csrf, "id": "77"})).status == 409
