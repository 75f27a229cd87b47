"""The admins' cost upload (/admin/costs) through the real app: roles, CSRF, size limit, the
errors by line, the summary and the stored table."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import ClientResponse

from pbx.keys import ENGINE
from pbx.staff_ui.costs import MAX_UPLOAD_BYTES
from pbx.storage.costs import daily_costs
from tests.api.test_staff_ui import Client, client, clock, log_in, page_csrf  # noqa: F401

FIXTURES = Path(__file__).parents[1] / "fixtures" / "costs"
PLAIN = b"date,source,medium,campaign,cost\n2024-03-01,google,cpc,<b>brand</b>,10.50\n"


async def upload(
    client: Client,  # noqa: F811
    data: bytes,
    csrf: str | None,
    name: str = "costs.csv",
    **fields: str,
) -> ClientResponse:
    form = aiohttp.FormData(quote_fields=False)  # names as browsers send them
    if csrf is not None:
        form.add_field("csrf", csrf)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename=name, content_type="text/csv")
    return await client.post("/admin/costs", data=form)


async def test_an_admin_uploads_an_export_and_sees_the_summary_and_the_table(
    client: Client,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = await page_csrf(client, "/admin/costs")
    data = (FIXTURES / "yandex-direct.csv").read_bytes()
    response = await upload(client, data, csrf, "../../etc/y.csv", preset="yandex-direct")
    assert response.status == 200
    text = await response.text()
    assert (
        "Imported y.csv: 3 rows, 2 days (2024-03-01..2024-03-02), sources yandex,"
        " total 7080.00 USD" in text
    )
    assert '<td>2024-03</td><td>yandex</td><td class="num">7080.00</td>' in text
    assert await daily_costs(client.app[ENGINE], 20240301, 20240331) == [
        (20240301, "yandex", "cpc", "Имплантация | поиск", 321040),
        (20240301, "yandex", "cpc", "РСЯ ретаргетинг", 87000),
        (20240302, "yandex", "cpc", "Имплантация | поиск", 299960),
    ]


async def test_check_only_stores_nothing_and_names_are_escaped(
    client: Client,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = await page_csrf(client, "/admin/costs")
    response = await upload(client, PLAIN, csrf, "<i>x.csv", dry_run="1")
    text = await response.text()
    assert response.status == 200 and "Checked, nothing stored: &lt;i&gt;x.csv" in text
    assert "<i>" not in text
    assert await daily_costs(client.app[ENGINE], 20240101, 20241231) == []
    stored = await upload(client, PLAIN, csrf)
    assert stored.status == 200
    assert await daily_costs(client.app[ENGINE], 20240101, 20241231) == [
        (20240301, "google", "cpc", "<b>brand</b>", 1050)
    ]


async def test_bad_rows_are_listed_by_line_and_nothing_is_stored(
    client: Client,  # noqa: F811
) -> None:
    await log_in(client, "ada")
    csrf = await page_csrf(client, "/admin/costs")
    bad = PLAIN + b"2024-03-02,google,cpc,x,<script>\n2024-13-01,google,cpc,x,1\n"
    response = await upload(client, bad, csrf)
    assert response.status == 400
    text = await response.text()
    assert "Nothing was imported" in text
    assert "costs.csv:3: cost: expected an amount" in text and "&lt;script&gt;" in text
    assert "costs.csv:4: date: expected YYYY-MM-DD or DD.MM.YYYY" in text
    assert "<script>" not in text
    assert await daily_costs(client.app[ENGINE], 20240101, 20241231) == []
    mapped = await upload(client, PLAIN, csrf, map="price=Cost")
    assert mapped.status == 400 and "--map: expected role=Header" in await mapped.text()


async def test_staff_get_403_and_anonymous_are_sent_to_log_in(
    client: Client,  # noqa: F811
) -> None:
    anonymous = await client.get("/admin/costs", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login")
    await log_in(client, "sam")
    assert (await client.get("/admin/costs")).status == 403
    csrf = await page_csrf(client, "/calls")
    assert (await upload(client, PLAIN, csrf)).status == 403
    assert await daily_costs(client.app[ENGINE], 20240101, 20241231) == []


async def test_a_missing_or_wrong_csrf_token_is_403(client: Client) -> None:  # noqa: F811
    await log_in(client, "ada")
    assert (await upload(client, PLAIN, None)).status == 403
    assert (await upload(client, PLAIN, "forged")).status == 403
    assert await daily_costs(client.app[ENGINE], 20240101, 20241231) == []


async def test_an_oversized_upload_is_413(client: Client) -> None:  # noqa: F811
    await log_in(client, "ada")
    csrf = await page_csrf(client, "/admin/costs")
    big = PLAIN + b"2024-03-02,google,cpc,x,1\n" * (MAX_UPLOAD_BYTES // 26 + 10)
    assert len(big) > MAX_UPLOAD_BYTES
    response = await upload(client, big, csrf)
    assert response.status == 413
    assert await daily_costs(client.app[ENGINE], 20240101, 20241231) == []


async def test_a_form_field_holding_a_nul_is_a_400(client: Client) -> None:  # noqa: F811
    """The upload's fields were read by hand, past the NUL check of every other form: a source
    holding a NUL was stored (on PostgreSQL, which refuses it, a 500)."""
    await log_in(client, "ada")
    csrf = await page_csrf(client, "/admin/costs")
    response = await upload(client, PLAIN, csrf, source="goo\x00gle", medium="cpc")
    assert response.status == 400
