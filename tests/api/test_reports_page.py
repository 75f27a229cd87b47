"""The reports page (/reports) and its CSV through the real app, on the hand-built history of
tests/api/test_reports_api.py; every expected number is worked out by hand below."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from tests.api.test_reports_api import DAY, Client, Scenario, app_client, history
from tests.api.test_staff_ui import log_in
from tests.helpers import STAFF_TOKEN, FakeClock, staff_users

RANGE = f"since={DAY}&until={DAY}"


class Tables(HTMLParser):
    """The page's tables as rows of cell texts, and the links in their header cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: dict[str, str] = {}  # row key -> href
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or "compare", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "a" and self._cell is not None:
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            text = "".join(self._cell).strip()
            self._table[-1].append(text)
            if self._href is not None:
                self.links[text] = self._href
            self._cell = self._href = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_tables(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    return parser


async def page(client: Client, query: str, status: int = 200) -> str:
    response = await client.get(f"/reports?{query}", allow_redirects=False)
    text = await response.text()
    assert response.status == status, text[:2000]
    return text


async def logged_in_history(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], user: str = "sam"
) -> Client:
    client = await history(tmp_path, aiohttp_client, users=staff_users())
    assert (await log_in(client, user)).status == 303
    return client


HEAD = [
    "Source",
    "Visits",
    "Calls",
    "First-time callers",
    "Repeat calls",
    "Answered",
    "Missed",
    "Answer rate",
    "Avg talk",
    "Leads",
    "Sales",
    "Revenue, USD",
    "Cost, USD",
    "Cost per call, USD",
    "Cost per lead, USD",
    "ROI",
    "Calls per visit",
]


async def test_the_report_table_has_every_field_and_the_totals(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await logged_in_history(tmp_path, aiohttp_client)
    html = await page(client, f"{RANGE}&group_by=source")
    table = read_tables(html).tables["report"]
    assert table[0] == HEAD
    by_key = {row[0]: " ".join(row[1:]) for row in table[1:]}
    # visits, calls, first-time callers, repeat calls, answered, missed, answer rate, avg talk,
    # leads, sales, revenue, cost, cost per call, cost per lead, ROI, calls per visit; no costs
    # were imported (cost 0.00): ROI has no denominator, cost per call is 0.00 where calls > 0
    assert by_key == {
        # V1's cpc visit: one call, answered, talked 40 s: a lead by talk
        "google": "2 1 1 0 1 0 100% 0:40 1 0 0.00 0.00 0.00 0.00 — 50%",
        # V2 called from a direct visit (10 s: no lead); V3 was direct too
        "(direct)": "2 1 1 0 1 0 100% 0:10 0 0 0.00 0.00 0.00 — — 50%",
        # the billboard's call was not answered; no visits, so no calls per visit
        "billboard": "0 1 1 0 0 1 0% — 0 0 0.00 0.00 0.00 — — —",
        # the fallback number's call: nobody to credit, 50 s: a lead
        "(unattributed)": "0 1 1 0 1 0 100% 0:50 1 0 0.00 0.00 0.00 0.00 — —",
        "yandex": "1 0 0 0 0 0 — — 0 0 0.00 0.00 — — — 0%",
        # 3 of 4 answered; (40 + 10 + 50) / 3 = 33.3 s talk; 4 calls / 5 visits
        "Total": "5 4 4 0 3 1 75% 0:33 2 0 0.00 0.00 0.00 0.00 — 80%",
    }
    assert "Reports" in html and 'href="/reports" aria-current="page"' in html


async def test_a_row_key_drills_down_to_what_it_is_made_of(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await logged_in_history(tmp_path, aiohttp_client)
    tables = read_tables(await page(client, f"{RANGE}&group_by=source"))
    link = tables.links["google"]
    params = parse_qs(urlsplit(link).query)
    assert params["source"] == ["google"] and params["group_by"] == ["campaign"]
    assert params["since"] == [DAY] and params["until"] == [DAY]
    html = await page(client, urlsplit(link).query)
    rows = {row[0]: row[2] for row in read_tables(html).tables["report"][1:]}
    assert rows == {"spring": "1", "brand": "0", "Total": "1"}  # V2's cpc visit did not call
    assert "Source: google" in html  # the filter is shown and can be removed


async def test_first_against_last_side_by_side(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await logged_in_history(tmp_path, aiohttp_client, "ada")
    table = read_tables(await page(client, f"{RANGE}&group_by=source&compare=1")).tables["compare"]
    assert table[0][1:] == ["Calls", "Leads", "Revenue, USD"]
    assert table[1] == ["First", "Last", "Difference"] * 3
    rows = {row[0]: row[1:7] for row in table[2:]}
    # calls first, last, difference; leads first, last, difference
    assert rows == {
        # V1 came first from yandex, called from google with a lead (40 s);
        # V2 came first from google and called from a direct visit (10 s, no lead)
        "google": ["1", "1", "0", "0", "1", "+1"],
        "yandex": ["1", "0", "−1", "1", "0", "−1"],
        "(direct)": ["0", "1", "+1", "0", "0", "0"],
        "billboard": ["1", "1", "0", "0", "0", "0"],
        "(unattributed)": ["1", "1", "0", "1", "1", "0"],
        "Total": ["4", "4", "0", "2", "2", "0"],
    }


async def test_charts_stack_the_days_calls_and_bar_calls_by_channel(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await logged_in_history(tmp_path, aiohttp_client)
    html = await page(client, f"{RANGE}&group_by=source")
    assert html.count('<svg class="chart-svg"') == 2
    assert "Calls per day by source" in html and "Calls and revenue by source" in html
    for source in ("google", "(direct)", "billboard", "(unattributed)"):
        assert f"<title>15 Jan, {source}: 1</title>" in html
        assert f"<title>{source}, Calls: 1</title>" in html
    assert "yandex, Calls" not in html  # no calls, no revenue: no bar
    assert "style=" not in html  # the CSP allows no inline styles
    empty = await page(client, "since=2027-01-01&until=2027-01-10")
    assert "No calls in this range" in empty and "No calls or revenue in this range" in empty


async def test_the_page_needs_a_login_and_takes_both_roles(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await history(tmp_path, aiohttp_client, users=staff_users())
    for path in ("/reports", "/reports.csv"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"].startswith("/login?next=")
    for user in ("sam", "ada"):
        assert (await log_in(client, user)).status == 303
        assert "<h1>Reports</h1>" in await page(client, RANGE)


async def test_bad_parameters_are_a_400_page(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await logged_in_history(tmp_path, aiohttp_client)
    for query, reason in (
        ("group_by=nope", "group_by: expected one of"),
        ("model=linear", "model: expected one of"),
        ("since=2027-13-01", "since: expected a date"),
        ("since=2027-01-02&until=2027-01-01", "until: expected a date on or after since"),
        ("include_probable=maybe", "include_probable"),
        ("compare=yes", "compare: expected 1"),
        ("source=" + "x" * 600, "source: at most"),
    ):
        html = await page(client, query, 400)
        assert reason in html and "<h1>400" in html, query
    response = await client.get("/reports.csv?model=linear")
    assert response.status == 400


async def test_csv_download_for_a_logged_in_user(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await logged_in_history(tmp_path, aiohttp_client)
    html = await page(client, f"{RANGE}&group_by=source&compare=1")
    assert f'href="/reports.csv?since={DAY}&amp;until={DAY}&amp;group_by=source' in html
    response = await client.get(f"/reports.csv?{RANGE}&group_by=source")
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    body = await response.read()
    # a byte order mark first: without it Excel reads UTF-8 as cp1251 (Cyrillic turns to mojibake)
    assert body.startswith(b"\xef\xbb\xbfsource,") and response.charset == "utf-8"
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    calls = {r["source"]: (r["visits"], r["calls"], r["leads"]) for r in rows}
    assert calls == {
        "google": ("2", "1", "1"),
        "(direct)": ("2", "1", "0"),
        "billboard": ("0", "1", "0"),
        "(unattributed)": ("0", "1", "1"),
        "yandex": ("1", "0", "0"),
        "(total)": ("5", "4", "2"),
    }


async def test_csv_download_ends_with_the_reports_notes(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Filtered by landing page, costs (kept by source, medium, campaign and day) cannot be
    shown: the JSON's note says so, and so does the staff page's CSV, under the table as a
    comment line; the API's CSV keeps to its table."""
    client = await logged_in_history(tmp_path, aiohttp_client)
    query = f"{RANGE}&group_by=source&landing=/"
    response = await client.get(f"/reports.csv?{query}")
    assert response.status == 200
    table, _, notes = (await response.read()).decode("utf-8-sig").partition("\r\n\r\n")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert rows[-1]["source"] == "(total)" and all(r["source"][0] != "#" for r in rows)
    assert list(csv.reader(io.StringIO(notes))) == [
        ["# cost is kept by source, medium, campaign and day: not shown when filtered by landing"]
    ]
    # the API's CSV is the table alone: a program reads the totals last
    api = await client.get(
        f"/api/v1/reports?{query}&format=csv", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
    )
    assert api.status == 200 and await api.read() == (table + "\r\n").encode()  # and no BOM


SCRIPT = "<script>alert(1)</script>"


async def test_names_from_visitors_are_shown_as_text(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    clock = FakeClock()
    client = await app_client(tmp_path, aiohttp_client, clock)
    s = Scenario(client, clock)
    visit = await s.visit(f"utm_source={quote(SCRIPT)}&utm_medium=cpc")
    await s.call(visit.number, "+79160000001")
    assert (await log_in(client)).status == 303
    html = await page(client, f"{RANGE}&group_by=source")
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    table = read_tables(html).tables["report"]
    assert [row[0] for row in table[1:]] == [SCRIPT, "Total"]  # as text, in the table
    assert quote(SCRIPT, safe="") in read_tables(html).links[SCRIPT]


async def test_a_time_grouped_report_with_a_probable_call_is_a_page(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Its "(probable)" row was read as a day for its drill-down link: a 500 for any day,
    week or month report whose range held a probable call (probable matching is on by
    default)."""
    clock = FakeClock()
    client = await app_client(tmp_path, aiohttp_client, clock)  # probable window: 60 s
    scenario = Scenario(client, clock)
    visit = await scenario.visit("utm_source=google&utm_medium=cpc")
    clock.advance(90)  # the lease ended 30 s ago: the call is a probable match
    await scenario.call(visit.number, "+79160000009")
    assert (await log_in(client, "sam")).status == 303
    for group in ("day", "week", "month"):
        response = await client.get(f"/reports?group_by={group}&include_probable=0")
        assert response.status == 200, (group, (await response.text())[:200])
        assert "(probable)" in await response.text()
