"""/calls/missed: callers whose latest call was missed, busy, abandoned or failed, oldest first,
until someone calls them back or they get through; and the count in the navigation."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from attribution.calls import CallReport
from pbx.app import build_app
from pbx.keys import CALLS, ENGINE, SETTINGS
from pbx.storage import tables
from pbx.storage.callers import rebuild_callers
from tests.api.test_staff_ui import log_in, page_csrf
from tests.helpers import FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
BILLBOARD = "+74990000101"  # tests/helpers: the static number of source "billboard"
FALLBACK = "+74990000099"
ANNA, BORIS, CLARA = "+79160000011", "+79160000012", "+79160000013"
ROW = re.compile(r'<tr data-caller="([^"]+)">(.*?)</tr>', re.S)


class Calls:
    def __init__(self, client: Client, clock: FakeClock) -> None:
        self.client, self.clock, self.n = client, clock, 0

    async def add(
        self, caller: str, dial: str, did: str = BILLBOARD, after: float = 600, person: bool = True
    ) -> int:
        """A call `after` seconds after the previous one; dial ANSWER, NOANSWER, BUSY, CANCEL;
        ANSWER without a `person` is a voicemail's."""
        self.clock.advance(after)
        self.n += 1
        at = self.clock.now
        answered = at + 5 if dial == "ANSWER" and person else None
        report = CallReport(f"m{self.n}", caller, did, at, at + 30, answered, dial)
        assert await self.client.app[CALLS].store(report)
        return self.n


async def setup(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Calls:
    clock = FakeClock()
    settings = settings_for(tmp_path, users=staff_users())
    await migrate(settings)
    return Calls(await aiohttp_client(build_app(settings, clock=clock)), clock)


async def listed(client: Client) -> dict[str, str]:
    """Caller -> their row's text, in page order (dicts keep it)."""
    response = await client.get("/calls/missed")
    assert response.status == 200
    return {
        caller: re.sub(r"<[^>]+>|\s+", " ", row)
        for caller, row in ROW.findall(await response.text())
    }


def attempts(row: str) -> int:
    match = re.search(r"(\d+)\s+Called back", row)
    assert match, row
    return int(match.group(1))


async def test_missed_callers_are_listed_oldest_first_until_they_get_through(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    calls = await setup(tmp_path, aiohttp_client)
    await calls.add(ANNA, "ANSWER")
    await calls.add(ANNA, "NOANSWER")
    await calls.add(BORIS, "BUSY", did=FALLBACK)
    await calls.add(ANNA, "CANCEL")  # Anna again: her latest is now after Boris's
    await calls.add(CLARA, "ANSWER")
    await calls.add(CLARA, "NOANSWER")
    await calls.add("anonymous", "NOANSWER")  # no number: nobody to call back
    await log_in(calls.client, "sam")
    rows = await listed(calls.client)
    assert list(rows) == [BORIS, ANNA, CLARA]
    assert attempts(rows[BORIS]) == 1  # never answered: every call counts
    assert attempts(rows[ANNA]) == 2  # two since her answered call
    assert attempts(rows[CLARA]) == 1
    assert "billboard" in rows[ANNA] and "Abandoned" in rows[ANNA]
    assert "Busy" in rows[BORIS] and "billboard" not in rows[BORIS]
    page = await (await calls.client.get("/calls")).text()
    assert "Missed calls (3)" in page

    await calls.add(ANNA, "ANSWER")  # she got through: nothing to call back
    assert list(await listed(calls.client)) == [BORIS, CLARA]
    await calls.add(ANNA, "ANSWER", person=False)  # voicemail took her call: call her back
    rows = await listed(calls.client)
    assert list(rows) == [BORIS, CLARA, ANNA] and "Voicemail" in rows[ANNA]


async def test_called_back_needs_the_csrf_token_and_takes_the_caller_off(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    calls = await setup(tmp_path, aiohttp_client)
    boris_call = await calls.add(BORIS, "BUSY")
    await calls.add(CLARA, "NOANSWER")
    await log_in(calls.client, "sam")
    page = await (await calls.client.get("/calls/missed")).text()
    call_id = re.search(rf'<tr data-caller="\{BORIS}">.*?name="call_id" value="(\d+)"', page, re.S)
    assert call_id
    forged = await calls.client.post(
        "/calls/missed", data={"call_id": call_id.group(1)}, allow_redirects=False
    )
    assert forged.status == 403
    assert list(await listed(calls.client)) == [BORIS, CLARA]

    csrf = await page_csrf(calls.client, "/calls/missed")
    done = await calls.client.post(
        "/calls/missed", data={"csrf": csrf, "call_id": call_id.group(1)}, allow_redirects=False
    )
    assert done.status == 303 and done.headers["Location"] == "/calls/missed"
    page = await (await calls.client.get("/calls/missed")).text()
    assert list(await listed(calls.client)) == [CLARA]
    assert f'{BORIS}</a> <span class="muted">by sam' in page  # who called back
    assert "Missed calls (1)" in page
    assert boris_call == 1

    bad = await calls.client.post(
        "/calls/missed", data={"csrf": csrf, "call_id": "x"}, allow_redirects=False
    )
    assert bad.status == 400

    await calls.add(BORIS, "NOANSWER")  # missed again later: back on the list
    rows = await listed(calls.client)
    assert list(rows) == [CLARA, BORIS]
    assert attempts(rows[BORIS]) == 2  # still no answered call: both count

    # the page was stale: Clara called again since; her old call is not hers to mark
    stale = re.search(rf'<tr data-caller="\{CLARA}">.*?name="call_id" value="(\d+)"', page, re.S)
    assert stale
    await calls.add(CLARA, "BUSY")
    response = await calls.client.post(
        "/calls/missed", data={"csrf": csrf, "call_id": stale.group(1)}, allow_redirects=False
    )
    assert response.status == 409
    assert list(await listed(calls.client)) == [BORIS, CLARA]


async def test_the_missed_calls_page_is_for_logged_in_staff(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    calls = await setup(tmp_path, aiohttp_client)
    await calls.add(BORIS, "BUSY")
    for method in ("GET", "POST"):
        response = await calls.client.request(method, "/calls/missed", allow_redirects=False)
        assert response.status == 303, method
        assert response.headers["Location"].startswith("/login?next=")
    await log_in(calls.client, "ada")  # admins see it too
    assert list(await listed(calls.client)) == [BORIS]


async def test_a_caller_kept_before_e164_can_be_marked_called_back_after_a_rebuild(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A call stored before 2026-12-03 keeps the caller as the trunk sent it (89160000014);
    `reports rebuild` keys their callers' row in E.164, and marking them called back compared
    the two: a 409 ('called again') for good."""
    calls = await setup(tmp_path, aiohttp_client)
    call_id = await calls.add("+79160000014", "BUSY")
    async with calls.client.app[ENGINE].begin() as conn:
        await conn.execute(update(tables.calls).values(caller="89160000014"))
    await rebuild_callers(calls.client.app[ENGINE], calls.client.app[SETTINGS].region)
    await log_in(calls.client, "sam")
    assert list(await listed(calls.client)) == ["+79160000014"]
    csrf = await page_csrf(calls.client, "/calls/missed")
    done = await calls.client.post(
        "/calls/missed", data={"csrf": csrf, "call_id": str(call_id)}, allow_redirects=False
    )
    assert done.status == 303 and list(await listed(calls.client)) == []
