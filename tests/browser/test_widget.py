"""The widget on the demo site, in headless Chromium, against the real daemon."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from .conftest import (
    LINES_SALES,
    LINES_SERVICE,
    ORGANIC,
    OWN,
    PAID,
    PRIVATE,
    REPO,
    STUB_NUMBER,
    Daemon,
    Server,
    StubState,
    Watched,
    free_port,
    watch,
)

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "artifacts" / "screenshots"
CPC = "utm_source=google&utm_medium=cpc"

# what the demo page shows before the widget runs: element id -> text, and id -> tel: href
TEXTS = {
    "head-phone": "+7 (495) 123-45-67",
    "hero-line": "Emergency line, day and night: 8\u00a0495\u00a0123-45-67",
    "inline-phone": "+7 495 1234567",
    "contact-phone": "+7\u00a0(495)\u00a0123\u201145\u201167 (24/7)",
    "messenger-phone": "+74951234567",
    "marked-phone": "ask for our number",
    "supplier-phone": "+7 (495) 123-45-67, ext. 2",
    "partner-phone": "+7 (495) 765-43-21",
    "footer-phone": "8 (495) 123-45-67",
    "popup-phone": "+7 (495) 123-45-67",
}
HREFS = {
    "head-phone": "tel:+74951234567",
    "call-button": "tel:84951234567",
    "footer-phone": "tel:+7-495-123-45-67",
    "popup-phone": "tel:+74951234567",
}
UNTOUCHED = {"supplier-phone", "partner-phone"}  # data-calltrack-noswap; another number

READ_PAGE = """([textIds, hrefIds]) => {
  const out = {texts: {}, hrefs: {}}, byId = id => document.getElementById(id);
  for (const id of textIds) out.texts[id] = byId(id) && byId(id).textContent;
  for (const id of hrefIds) out.hrefs[id] = byId(id) && byId(id).getAttribute("href");
  out.ready = document.documentElement.classList.contains("calltrack-ready");
  try { out.stored = JSON.parse(localStorage.getItem("calltrack") || "null"); }
  catch (e) { out.stored = null; }  // storage blocked
  return out;
}"""

POPUP_SWAPPED = """() => {
  const e = document.getElementById("popup-phone");
  return !!e && !e.textContent.includes("495") && !e.getAttribute("href").includes("495");
}"""


def restyle(text: str, e164: str) -> str:
    """Each phone number in text in its own style with the tracking number's last ten digits."""

    def one(match: re.Match[str]) -> str:
        written = match.group()
        if sum(ch.isdigit() for ch in written) < 10:
            return written
        new = list(e164[-10:])
        out = [new.pop() if ch.isdigit() and new else ch for ch in reversed(written)]
        return "".join(reversed(out))

    return re.sub(r"\+?\(?\d[\d\s()\-\u2011.]*\d", one, text)


def read(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(READ_PAGE, [list(TEXTS), list(HREFS)])
    return result


def shown_number(state: dict[str, Any]) -> str:
    """The tracking number the page shows, read from its tap-to-call link."""
    return "+" + re.sub(r"\D", "", state["hrefs"]["head-phone"])


def open_demo(
    watched: Watched, demo: Server, tracker: str, query: str = "", referer: str | None = None
) -> None:
    url = f"{demo.url}/index.html?tracker={tracker}" + (f"&{query}" if query else "")
    watched.page.goto(url, referer=referer)


def assert_swapped(state: dict[str, Any], number: str) -> None:
    for key, original in TEXTS.items():
        got = state["texts"][key]
        if key in UNTOUCHED:
            assert got == original, key
        elif key == "marked-phone":
            assert got == restyle("+7 495 123-45-67", number), key  # the server's display
        else:
            tail = " (24/7)" if original.endswith(" (24/7)") else ""  # digits, but no phone
            assert got == restyle(original.removesuffix(tail), number) + tail, key
    for key, original in HREFS.items():
        assert state["hrefs"][key] == restyle(original, number), key


def assert_original(state: dict[str, Any]) -> None:
    assert state["texts"] == TEXTS
    assert state["hrefs"] == HREFS


def test_paid_visit_swaps_every_occurrence(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    page = watched.page
    with page.expect_request(lambda r: r.url == daemon.url + "/api/v1/visits") as visit:
        open_demo(watched, demo, daemon.url, CPC, referer="https://www.google.com/")
    body = json.loads(visit.value.post_data or "{}")
    assert body["site"] == "main"
    assert body["url"] == f"{demo.url}/index.html?tracker={daemon.url}&{CPC}"
    assert body["referrer"] == "https://www.google.com/"
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)  # the pop-up comes after 2 s
    state = read(page)
    number = shown_number(state)
    assert number in PAID
    assert_swapped(state, number)
    # nowhere outside data-calltrack-noswap does the site's own number remain, in any format
    leftover = page.evaluate(
        """() => {
          const body = document.body.cloneNode(true);
          body.querySelectorAll("[data-calltrack-noswap], script").forEach(e => e.remove());
          const hrefs = [...body.querySelectorAll("a[href]")].map(a => a.getAttribute("href"));
          return [body.textContent, ...hrefs].join("|").replace(/\\D/g, "");
        }"""
    )
    assert OWN[2:] not in leftover
    assert state["ready"] is True
    # the widget's own changes do not set it off again: the page is quiet once swapped
    changes = page.evaluate(
        """() => new Promise(done => {
          let count = 0;
          const observer = new MutationObserver(records => { count += records.length; });
          observer.observe(document.documentElement,
                           {childList: true, subtree: true, characterData: true, attributes: true});
          setTimeout(() => { observer.disconnect(); done(count); }, 1000);
        })"""
    )
    assert changes == 0
    assert watched.problems(daemon.url) == []

    lease = daemon.held()[state["stored"]["s"]]
    assert lease["number"] == number
    assert lease["pool"] == "paid"
    assert lease["site"] == "main"
    assert lease["visitor_id"] == state["stored"]["v"]
    # the brief names them utm_source/utm_medium; the daemon says source/medium
    assert lease.get("utm_source", lease.get("source")) == "google"
    assert lease.get("utm_medium", lease.get("medium")) == "cpc"


def test_two_visitors_at_once_get_two_numbers(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    first, second = new_page(), new_page()
    open_demo(first, demo, daemon.url, CPC + "&utm_campaign=plumbing")
    open_demo(second, demo, daemon.url, CPC + "&utm_campaign=plumbing")
    states = []
    for watched in (first, second):
        watched.page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
        states.append(read(watched.page))
    numbers = [shown_number(state) for state in states]
    assert numbers[0] != numbers[1]
    assert set(numbers) <= set(PAID)
    for state, number in zip(states, numbers, strict=True):
        assert_swapped(state, number)
    held = daemon.held()
    sessions = [state["stored"]["s"] for state in states]
    assert sessions[0] != sessions[1]
    assert [held[s]["number"] for s in sessions] == numbers
    assert states[0]["stored"]["v"] != states[1]["stored"]["v"]
    assert first.problems(daemon.url) == [] and second.problems(daemon.url) == []


def test_session_outlives_pages_but_not_a_new_campaign(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    page = watched.page
    open_demo(watched, demo, daemon.url, "utm_source=newsletter&utm_medium=email")
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    landing = read(page)
    number = shown_number(landing)
    assert number in ORGANIC  # the catch-all pool

    open_demo(watched, demo, daemon.url)  # the next page of the same visit
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    second = read(page)
    assert second["stored"]["s"] == landing["stored"]["s"]
    assert shown_number(second) == number

    open_demo(watched, demo, daemon.url, CPC)  # later an ad click: a new session, same visitor
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    third = read(page)
    assert third["stored"]["s"] != landing["stored"]["s"]
    assert third["stored"]["v"] == landing["stored"]["v"]
    assert shown_number(third) in PAID
    assert daemon.held()[third["stored"]["s"]]["pool"] == "paid"
    assert watched.problems(daemon.url) == []


def test_spa_route_change_is_a_page_view_of_the_session(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    page = watched.page
    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    session = read(page)["stored"]["s"]

    def visit_sent(r: Any) -> bool:
        return bool(r.url == daemon.url + "/api/v1/visits")

    # sent as a visit with the session the widget has, like a page load: the server decides
    with page.expect_response(visit_sent) as pushed:
        page.evaluate("history.pushState({}, '', '/prices.html')")
    sent = json.loads(pushed.value.request.post_data or "{}")
    assert sent["url"] == f"{demo.url}/prices.html"
    assert sent["session_id"] == session
    assert pushed.value.json()["session_id"] == session  # the same session goes on
    with page.expect_request(visit_sent) as back:
        page.go_back()
    assert json.loads(back.value.post_data or "{}")["url"].startswith(f"{demo.url}/index.html")
    # a number the new "route" renders is swapped as well
    page.evaluate(
        """() => { const p = document.createElement("p"); p.id = "route-phone";
                   p.textContent = "Prices by phone: 8 495 123 45 67"; document.body.append(p); }"""
    )
    number = shown_number(read(page))
    page.wait_for_function(
        "n => document.getElementById('route-phone').textContent.endsWith(n)",
        arg=restyle("8 495 123 45 67", number)[-13:],
    )
    assert watched.problems(daemon.url) == []


SIGNALS = {
    "gpc": "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})",
    "dnt": "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
}


@pytest.mark.parametrize("signal", list(SIGNALS))
def test_privacy_signals_are_sent_and_the_server_decides(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon, signal: str
) -> None:
    # site "private" respects the signals: its own number stays
    private = new_page()
    private.page.add_init_script(SIGNALS[signal])
    with private.page.expect_request(lambda r: r.url.endswith("/api/v1/visits")) as visit:
        open_demo(private, demo, daemon.url, "site=private&" + CPC)
    assert json.loads(visit.value.post_data or "{}")["dnt"] is True
    private.page.wait_for_function(
        "() => document.documentElement.classList.contains('calltrack-ready')"
    )
    private.page.wait_for_selector("#popup-phone")
    assert_original(read(private.page))
    assert private.problems(daemon.url) == []

    # the same site without the signal does swap
    plain = new_page()
    with plain.page.expect_request(lambda r: r.url.endswith("/api/v1/visits")) as visit:
        open_demo(plain, demo, daemon.url, "site=private&" + CPC)
    assert "dnt" not in json.loads(visit.value.post_data or "{}")
    plain.page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    assert shown_number(read(plain.page)) in PRIVATE

    # site "main" does not respect them (the default): tracked all the same
    main = new_page()
    main.page.add_init_script(SIGNALS[signal])
    open_demo(main, demo, daemon.url, CPC)
    main.page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    assert shown_number(read(main.page)) in PAID


def test_cookie_keeps_the_session_where_storage_is_blocked(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    page = watched.page
    page.add_init_script(
        """Object.defineProperty(window, "localStorage",
             {get() { throw new DOMException("blocked", "SecurityError"); }});"""
    )

    def stored() -> dict[str, Any]:
        cookie = next(c for c in page.context.cookies() if c["name"] == "calltrack")
        value: dict[str, Any] = json.loads(unquote(cookie["value"]))
        return value

    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    first, number = stored(), shown_number(read(page))
    open_demo(watched, demo, daemon.url)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    assert stored()["s"] == first["s"] and stored()["v"] == first["v"]
    assert shown_number(read(page)) == number
    assert daemon.held()[first["s"]]["number"] == number
    assert watched.problems(daemon.url) == []


FAILURES = ["hang-up", "slow", "500", "403", "400", "not-json", "bad-shape", "numbers-not-a-list"]


@pytest.mark.parametrize("mode", FAILURES)
def test_broken_api_keeps_the_site_numbers(
    new_page: Callable[[], Watched], demo: Server, stub: tuple[Server, StubState], mode: str
) -> None:
    server, state = stub
    state.mode = mode
    state.requests.clear()
    watched = new_page()
    page = watched.page
    started = time.monotonic()
    open_demo(watched, demo, server.url, CPC)
    page.wait_for_function(
        "() => document.documentElement.classList.contains('calltrack-ready')", timeout=5_000
    )
    assert time.monotonic() - started < 3.0  # page load, then at most the 1.5 s timeout
    page.wait_for_selector("#popup-phone")
    page.wait_for_timeout(3_500 if mode == "slow" else 500)  # a late answer changes nothing
    assert state.requests and state.requests[0] == "/api/v1/visits"
    assert_original(read(page))
    assert page.eval_on_selector("#head-phone", "e => getComputedStyle(e).visibility") == "visible"
    assert watched.problems(server.url) == []


def test_tracker_down_keeps_the_site_numbers(new_page: Callable[[], Watched], demo: Server) -> None:
    tracker = f"http://127.0.0.1:{free_port()}"  # nothing listens: widget.js does not load
    watched = new_page()
    page = watched.page
    open_demo(watched, demo, tracker, CPC)
    page.wait_for_selector("#popup-phone")
    assert_original(read(page))
    # numbers hidden with calltrack-hide show by CSS alone within 3 s
    page.wait_for_function(
        "() => getComputedStyle(document.getElementById('head-phone')).visibility === 'visible'",
        timeout=4_000,
    )
    assert watched.problems(tracker) == []


def test_lease_follows_activity_and_visibility(
    new_page: Callable[[], Watched], demo: Server, daemon_factory: Callable[[str, float], Daemon]
) -> None:
    daemon = daemon_factory("3s", 0.5)
    watched = new_page()
    page = watched.page
    pings: list[float] = []
    page.on("request", lambda r: r.url.endswith("/ping") and pings.append(time.monotonic()))
    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    state = read(page)
    session, number = state["stored"]["s"], shown_number(state)

    # an active visitor: pings keep the lease well past freeze_time
    for i in range(20):
        page.mouse.move(100 + 20 * i, 200 + 10 * (i % 3))
        page.wait_for_timeout(300)
    assert len(pings) >= 4  # one a second
    assert daemon.held()[session]["number"] == number

    # the tab is hidden: no more pings, and the lease ends freeze_time after the last one
    page.evaluate(
        """() => {
          const hide = (name, value) =>
            Object.defineProperty(document, name, {configurable: true, get: () => value});
          hide("hidden", true);
          hide("visibilityState", "hidden");
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    hidden_at = time.monotonic()
    deadline = hidden_at + 15
    while session in daemon.held() and time.monotonic() < deadline:
        page.mouse.move(300, 300)  # events still arrive; the widget must not ping while hidden
        page.wait_for_timeout(250)
    released_after = time.monotonic() - hidden_at
    assert session not in daemon.held()
    assert released_after >= 2.0  # not before freeze_time (3 s) after the last ping
    assert not [t for t in pings if t > hidden_at + 0.5]

    # the visitor comes back: the widget asks again and shows a held tracking number
    with page.expect_response(lambda r: r.url.startswith(daemon.url + "/api/v1/visits")) as ask:
        page.evaluate(
            """() => {
              delete document.hidden; delete document.visibilityState;
              document.dispatchEvent(new Event("visibilitychange"));
            }"""
        )
    answer = ask.value.json()
    page.wait_for_function(
        "n => document.getElementById('head-phone').getAttribute('href') === 'tel:' + n",
        arg=answer["numbers"][0]["number"],
    )
    back = read(page)
    held = daemon.held()
    assert back["stored"]["s"] in held
    assert held[back["stored"]["s"]]["number"] == shown_number(back)
    assert_swapped(back, shown_number(back))
    assert watched.problems(daemon.url) == []


def test_screenshots_before_and_after_swap(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = new_page()
    before.page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    open_demo(before, demo, daemon.url, CPC)
    before.page.wait_for_selector("#popup-phone")
    assert_original(read(before.page))
    shot_before = SCREENSHOTS / "demo-before-swap.png"
    before.page.screenshot(path=str(shot_before), full_page=True)

    after = new_page()
    open_demo(after, demo, daemon.url, CPC)
    after.page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    state = read(after.page)
    assert_swapped(state, shown_number(state))
    shot_after = SCREENSHOTS / "demo-after-swap.png"
    after.page.screenshot(path=str(shot_after), full_page=True)
    for shot in (shot_before, shot_after):
        assert Path(shot).stat().st_size > 10_000


# web_widget/demo/contacts.html: links to messengers and SMS keep their text (it must be the
# number they really open)
CHAT_LINKS = {
    "wa": ("https://wa.me/74951234567", "WhatsApp +7 495 123 45 67"),
    "wa-api": (
        "https://api.whatsapp.com/send?phone=74951234567",
        "WhatsApp Business +7 (495) 123-45-67",
    ),
    "tg": ("https://t.me/+74951234567", "Telegram 8 495 1234567"),
    "viber": ("viber://chat?number=%2B74951234567", "Viber +7 495 123-45-67"),
    "sms": ("sms:+74951234567", "Text us: 8 (495) 123-45-67"),
}
# swapped beside them: plain text and tap-to-call, with its label and title
SWAPPED = {"plain": "Call +7 (495) 123-45-67 or write to us", "tel": "+7 495 123-45-67"}
TEL_ATTRS = {
    "href": "tel:+74951234567",
    "aria-label": "Call us: +7 (495) 123-45-67",
    "title": "8 495 123 45 67, 24/7",
}
READ_CONTACTS = """(ids) => Object.fromEntries(ids.map(id => {
  const e = document.getElementById(id);
  return [id, e && {text: e.textContent, href: e.getAttribute("href"),
                    label: e.getAttribute("aria-label"), title: e.getAttribute("title")}];
}))"""


def open_contacts(watched: Watched, demo: Server, tracker: str) -> dict[str, Any]:
    """The demo's contacts page (every kind of link) once swapped: id -> text and attributes."""
    # a paid visit: the organic pool's two numbers may be taken by earlier tests
    watched.page.goto(f"{demo.url}/contacts.html?tracker={tracker}&{CPC}")
    watched.page.wait_for_function(
        "() => !document.getElementById('tel').getAttribute('href').includes('495')"
    )
    state: dict[str, Any] = watched.page.evaluate(READ_CONTACTS, [*SWAPPED, *CHAT_LINKS])
    return state


def test_messenger_and_sms_links_keep_their_number(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    page = watched.page
    state = open_contacts(watched, demo, daemon.url)
    number = "+" + re.sub(r"\D", "", state["tel"]["href"])
    assert number in PAID
    assert state["plain"]["text"] == restyle(SWAPPED["plain"], number)
    assert state["tel"]["text"] == restyle(SWAPPED["tel"], number)
    for key, (href, text) in CHAT_LINKS.items():
        assert (state[key]["href"], state[key]["text"]) == (href, text), key
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "contacts-messenger-links.png"), full_page=True)

    # added later, or changed later, they are left alone as well
    page.evaluate(
        """() => {
          document.getElementById("wa").append(" or 8 495 123-45-67");
          const a = document.createElement("a");
          a.id = "late-sms"; a.href = "SMS:+74951234567"; a.textContent = "+7 495 123-45-67";
          const p = document.createElement("p");
          p.id = "late-plain"; p.textContent = "+7 495 123-45-67";
          document.body.append(a, p);
        }"""
    )
    page.wait_for_function(
        "() => !document.getElementById('late-plain').textContent.includes('495')"
    )
    late = page.evaluate(READ_CONTACTS, ["wa", "late-sms"])
    assert late["wa"]["text"] == CHAT_LINKS["wa"][1] + " or 8 495 123-45-67"
    assert late["late-sms"]["text"] == "+7 495 123-45-67"
    assert watched.problems(daemon.url) == []


def test_tel_link_label_and_title_are_swapped_with_its_text(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    state = open_contacts(watched, demo, daemon.url)["tel"]
    number = "+" + re.sub(r"\D", "", state["href"])
    assert number in PAID
    assert state == {
        "text": restyle(SWAPPED["tel"], number),
        "href": restyle(TEL_ATTRS["href"], number),
        "label": restyle(TEL_ATTRS["aria-label"], number),
        "title": restyle(TEL_ATTRS["title"], number),
    }
    # a label the site sets later is swapped too
    watched.page.evaluate(
        "document.getElementById('tel').setAttribute('aria-label', 'Phone 8 (495) 123-45-67')"
    )
    watched.page.wait_for_function(
        "() => !document.getElementById('tel').getAttribute('aria-label').includes('495')"
    )
    label = watched.page.eval_on_selector("#tel", "e => e.getAttribute('aria-label')")
    assert label == restyle("Phone 8 (495) 123-45-67", number)
    assert watched.problems(daemon.url) == []


def test_the_server_decides_the_session(
    new_page: Callable[[], Watched], demo: Server, stub: tuple[Server, StubState]
) -> None:
    server, state = stub
    state.mode, state.session_id = "ok", "a" * 32
    state.requests.clear()
    state.posts.clear()
    watched = new_page()
    page = watched.page
    page.clock.install(time=datetime(2026, 3, 1, 10, 0, tzinfo=UTC))

    def stored() -> Any:
        return page.evaluate("JSON.parse(localStorage.getItem('calltrack') || 'null')")

    try:
        open_demo(watched, demo, server.url, "utm_source=newsletter&utm_medium=email")
        page.wait_for_function(
            "() => document.documentElement.classList.contains('calltrack-ready')"
        )
        assert state.posts[0][0] == "/api/v1/visits"
        assert "session_id" not in state.posts[0][1]  # a new visitor has none
        assert stored()["s"] == "a" * 32

        # hours later, from an ad: the widget still sends the session it has (only the server
        # knows whether it is over) and keeps the one the server answers
        page.clock.fast_forward("03:00:00")
        state.session_id = "b" * 32
        state.posts.clear()
        open_demo(watched, demo, server.url, CPC + "&utm_campaign=spring")
        page.wait_for_function(
            "s => (JSON.parse(localStorage.getItem('calltrack')) || {}).s === s", arg="b" * 32
        )
        path, body = state.posts[0]
        assert path == "/api/v1/visits"
        assert body["session_id"] == "a" * 32
        assert body["visitor_id"] == "v" * 32
        assert body["url"].endswith(CPC + "&utm_campaign=spring")

        # pings carry the answered session; a 404 (the server ended it) starts a visit
        state.mode, state.session_id = "ping-404", "c" * 32
        with page.expect_request(lambda r: r.url.endswith("/ping")) as ping:
            page.mouse.move(200, 200)
            page.clock.run_for(1500)
        assert ping.value.url == f"{server.url}/api/v1/visits/{'b' * 32}/ping"
        page.wait_for_function(
            "s => (JSON.parse(localStorage.getItem('calltrack')) || {}).s === s", arg="c" * 32
        )
        visits = [body for path, body in state.posts if path == "/api/v1/visits"]
        assert visits[-1]["session_id"] == "b" * 32
        assert watched.problems(server.url) == []
    finally:
        state.mode, state.session_id = "ok", "s" * 32


def test_two_own_numbers_get_a_tracking_number_each(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    """Sales and service each get their own number, each from the pool that replaces it."""
    watched = new_page()
    page = watched.page
    page.goto(f"{demo.url}/contacts.html?site=lines&tracker={daemon.url}&{CPC}")
    page.wait_for_function(
        "() => !document.getElementById('service-tel').getAttribute('href').includes('555')"
    )
    state = page.evaluate(READ_CONTACTS, ["tel", "service-tel", "wa"])
    sales = "+" + re.sub(r"\D", "", state["tel"]["href"])
    service = "+" + re.sub(r"\D", "", state["service-tel"]["href"])
    assert sales in LINES_SALES and service in LINES_SERVICE
    assert state["service-tel"]["text"] == restyle("+7 (495) 555-00-11", service)
    assert state["tel"]["text"] == restyle("+7 495 123-45-67", sales)
    assert state["wa"]["text"] == CHAT_LINKS["wa"][1]  # the messenger keeps the sales line
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "contacts-two-lines.png"), full_page=True)
    assert watched.problems(daemon.url) == []


def session_ad_ids(daemon: Daemon, session_id: str) -> tuple[str | None, str | None]:
    with sqlite3.connect(daemon.log.parent / "calltrack.db") as db:
        row = db.execute(
            "SELECT ga_client_id, ym_client_id FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
    return row[0], row[1]


def test_ad_platform_cookies_reach_the_session(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    watched = new_page()
    page = watched.page
    # GA4's per-stream cookie (_ga_<stream>) holds session data, not the client id
    page.context.add_cookies(
        [
            {
                "name": "_ga_ABC123XYZ",
                "value": "GS1.1.1700000000.1.1.1700000100.0.0.0",
                "url": demo.url,
            },
            {"name": "_ym_uid", "value": "1700000000123456789", "url": demo.url},
        ]
    )
    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    session_id = read(page)["stored"]["s"]
    assert session_ad_ids(daemon, session_id) == (None, "1700000000123456789")

    # Google Analytics sets _ga after the first page: the next page fills it in
    page.context.add_cookies(
        [{"name": "_ga", "value": "GA1.2.1234567890.1700000000", "url": demo.url}]
    )
    open_demo(watched, demo, daemon.url)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    assert read(page)["stored"]["s"] == session_id
    assert session_ad_ids(daemon, session_id) == ("1234567890.1700000000", "1700000000123456789")
    assert watched.problems(daemon.url) == []


def test_an_element_with_id_calltrack_does_not_switch_the_widget_off(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    """An element's id is a property of window (named access): a site's <div id="calltrack">
    made `window.calltrack` true, and the widget, taking it for itself loaded twice, did
    nothing. Stood in for by an element set there before any script of the page runs."""
    watched = new_page()
    watched.page.add_init_script(
        "Object.defineProperty(window, 'calltrack', {value: document.createElement('div'),"
        " writable: true, configurable: true})"
    )
    state = open_contacts(watched, demo, daemon.url)["tel"]  # waits for the swap
    assert "+" + re.sub(r"\D", "", state["href"]) in PAID
    assert watched.page.evaluate("typeof window.calltrack.swap") == "function"
    assert watched.problems(daemon.url) == []


def test_a_crawler_sees_the_sites_own_numbers_and_holds_none(
    browser: Any, demo: Server, daemon: Daemon
) -> None:
    """Googlebot renders with JavaScript (its User-Agent a Chrome's plus its name): it gets the
    site's numbers, no tracking number is held for it, and the page is left whole."""
    googlebot = (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML,"
        " like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1;"
        " +http://www.google.com/bot.html)"
    )
    context = browser.new_context(viewport={"width": 1100, "height": 900}, user_agent=googlebot)
    try:
        watched = watch(context.new_page())
        held_before = set(daemon.held())
        with watched.page.expect_response(lambda r: r.url == daemon.url + "/api/v1/visits") as got:
            open_demo(watched, demo, daemon.url, CPC)
        assert got.value.status == 200
        assert got.value.json()["numbers"] == []
        watched.page.wait_for_function(
            "document.documentElement.classList.contains('calltrack-ready')"
        )
        # the pop-up comes after 2 s: the widget leaves it whole too
        watched.page.wait_for_function("document.getElementById('popup-phone') !== null")
        assert_original(read(watched.page))
        assert set(daemon.held()) == held_before
        assert watched.problems(daemon.url) == []
    finally:
        context.close()


def test_a_percent_encoded_tel_link_is_swapped_and_another_numbers_left_as_written(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    """WordPress's esc_url writes a tel: link's spaces as %20: its text was swapped and its href
    kept the site's number, so a tap dialled the untracked line."""
    watched = new_page()
    page = watched.page
    number = "+" + re.sub(r"\D", "", open_contacts(watched, demo, daemon.url)["tel"]["href"])
    page.evaluate(
        """() => {
          const link = (id, href) => { const a = document.createElement("a"); a.id = id;
            a.href = href; a.textContent = "Call"; document.body.append(a); };
          link("wp-tel", "tel:+7%20495%20123-45-67");
          link("other-tel", "tel:+7%20495%20765-43-21");
        }"""
    )
    page.wait_for_function("() => !document.getElementById('wp-tel').href.includes('495')")
    hrefs = page.evaluate(
        "['wp-tel', 'other-tel'].map(id => document.getElementById(id).getAttribute('href'))"
    )
    assert hrefs == [restyle("tel:+7 495 123-45-67", number), "tel:+7%20495%20765-43-21"]
    assert watched.problems(daemon.url) == []


def test_text_typed_into_an_editable_element_is_left_as_typed(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    """A comment box or a page builder's canvas: the site's number typed there was swapped
    under the cursor (and a builder saved the tracking number into the page)."""
    watched = new_page()
    page = watched.page
    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    page.evaluate(
        """() => { const box = document.createElement("div"); box.id = "box";
                   box.contentEditable = "true"; document.body.append(box); }"""
    )
    page.click("#box")
    page.keyboard.type("Our office: 84951234567 call us")
    # a number added after the typing is swapped: the observer has seen the typing by then
    page.evaluate(
        """() => { const p = document.createElement("p"); p.id = "later";
                   p.textContent = "8 495 123 45 67"; document.body.append(p); }"""
    )
    page.wait_for_function("() => !document.getElementById('later').textContent.includes('495')")
    assert page.inner_text("#box") == "Our office: 84951234567 call us"
    assert watched.problems(daemon.url) == []


def test_an_in_page_anchor_is_no_page_view_and_a_hash_route_is(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    """Every URL change was a page view, #faq too: scroll-spy scripts that rewrite the hash
    per section sent a visit per section and spent the network's page-view budget."""
    watched = new_page()
    page = watched.page
    sent: list[str] = []
    page.on(
        "request",
        lambda r: (
            sent.append(json.loads(r.post_data or "{}").get("url", ""))
            if r.url == daemon.url + "/api/v1/visits"
            else None
        ),
    )
    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    for anchor in ("#faq", "#prices", ""):
        page.evaluate(
            f"history.pushState({{}}, '', location.pathname + location.search + '{anchor}')"
        )
    with page.expect_request(lambda r: r.url == daemon.url + "/api/v1/visits"):
        page.evaluate("history.pushState({}, '', '#/cart')")  # a hash-mode router's route
    for route in ("#products/12", "#products/13"):  # Backbone's routes
        with page.expect_request(lambda r: r.url == daemon.url + "/api/v1/visits"):
            page.evaluate(f"history.pushState({{}}, '', '{route}')")
    assert len(sent) == 4 and sent[1].endswith("#/cart"), sent
    assert sent[2].endswith("#products/12") and sent[3].endswith("#products/13"), sent
    assert watched.problems(daemon.url) == []


def test_a_url_the_site_rewrites_during_the_first_visit_starts_one_visitor(
    new_page: Callable[[], Watched], demo: Server, daemon: Daemon
) -> None:
    """A site that strips its utm_ tags with replaceState while the first visit is on its way:
    a second visit went at once, without ids, and started another visitor, session and
    number, which kept the call if it came back last (as direct traffic)."""
    watched = new_page()
    page = watched.page
    visits: list[dict[str, Any]] = []

    def slow_first(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        visits.append(body)
        if len(visits) == 1:
            time.sleep(0.6)  # the site rewrites its URL meanwhile
        route.continue_()

    page.route(daemon.url + "/api/v1/visits", slow_first)
    # the site rewrites its URL once the first visit is on its way, whenever the widget loads
    page.add_init_script(
        "const f = window.fetch; let once = true; window.fetch = function (...a) {"
        " if (once && String(a[0]).endsWith('/api/v1/visits')) { once = false;"
        " setTimeout(() => history.replaceState({}, '', location.pathname + '?tracker='"
        " + new URLSearchParams(location.search).get('tracker')), 100); }"
        " return f.apply(this, a); }"
    )
    open_demo(watched, demo, daemon.url, CPC)
    page.wait_for_function(POPUP_SWAPPED, timeout=10_000)
    # the rewritten page is sent once the first answer is in, with the session's ids
    deadline = time.monotonic() + 3
    while len(visits) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    without_ids = [v for v in visits if not v.get("visitor_id")]
    assert len(without_ids) == 1, visits
    assert "utm_medium=cpc" in without_ids[0]["url"]
    assert len(visits) == 2 and visits[1].get("session_id"), visits
    assert "utm_medium" not in visits[1]["url"]
    assert watched.problems(daemon.url) == []


def test_a_visit_refused_for_now_is_tried_again_with_its_landing_page(
    new_page: Callable[[], Watched], demo: Server, stub: tuple[Server, StubState]
) -> None:
    """A 429 (too many new visits from a carrier's shared address) stopped the widget for the
    page; and a first visit that did not get through was retried with the URL of the moment,
    whose utm_ tags the site had stripped since."""
    server, state = stub
    state.mode, state.requests[:], state.posts[:] = "429", [], []
    watched = new_page()
    page = watched.page
    page.clock.install()
    # the fake clock's performance object has no navigation entry: the one the page had
    page.add_init_script(
        "const landed = location.href;"
        " performance.getEntriesByType = t => t === 'navigation' ? [{name: landed}] : [];"
    )
    open_demo(watched, demo, server.url, CPC)
    page.wait_for_function("() => document.documentElement.classList.contains('calltrack-ready')")
    page.evaluate("history.replaceState({}, '', location.pathname)")  # the site strips its tags
    state.mode = "ok"
    page.mouse.move(10, 10)  # activity: the next tick sends
    page.clock.run_for(31_000)
    page.wait_for_function(
        "() => !document.getElementById('head-phone').textContent.includes('495')"
    )
    # the first, the tick's (and the one the rewrite sent, if it was not sent with the first):
    # all with the landing page's tags
    visits = [body for path, body in state.posts if path == "/api/v1/visits"]
    assert len(visits) >= 2 and all("utm_medium=cpc" in v["url"] for v in visits), visits
    assert watched.problems(server.url) == []


def wait_for_text(page: Any, element_id: str, text: str) -> None:
    """Until the element's text holds `text` (a swap, or the site's number back)."""
    page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent.includes(text)",
        arg=[element_id, text],
        timeout=30_000,  # Playwright's default: the first swap waits for a loaded CI machine too
    )


def test_a_copy_the_site_makes_of_a_swapped_number_follows_when_the_number_changes(
    new_page: Callable[[], Watched], demo: Server, stub: tuple[Server, StubState]
) -> None:
    """A sticky header cloned on scroll (or HTML copied into a pop-up) after the swap holds the
    tracking number, not the site's: when the session's number changed (its lease lapsed while
    the tab slept), the copy kept the old one, by then leased to another visitor."""
    server, state = stub
    state.mode, state.requests[:], state.posts[:], state.numbers = "ok", [], [], None
    watched = new_page()
    page = watched.page
    open_demo(watched, demo, server.url, CPC)
    wait_for_text(page, "head-phone", "000-00-01")
    page.evaluate(
        """() => {
          const clone = document.getElementById("head-phone").cloneNode(true);
          clone.id = "sticky-phone";
          document.body.append(clone);
          const copy = document.createElement("div");
          copy.id = "copied";
          copy.innerHTML = document.getElementById("hero-line").outerHTML;
          document.body.append(copy);
        }"""
    )
    state.numbers = [
        {
            "replace": "+7 495 123-45-67",
            "own": "+74951234567",
            "number": "+74990000002",
            "display": "+7 499 000-00-02",
        }
    ]
    try:
        page.mouse.move(10, 10)  # activity: the next ping (every second here) gets the new number
        wait_for_text(page, "head-phone", "000-00-02")
        page.wait_for_timeout(300)  # the observer's turn
        copies = page.evaluate(
            """() => ({
              sticky: document.getElementById("sticky-phone").textContent,
              href: document.getElementById("sticky-phone").getAttribute("href"),
              copied: document.getElementById("copied").textContent,
              head: document.getElementById("head-phone").textContent,
            })"""
        )
        # the database away: the site's own numbers come back, in the copies too
        state.numbers = []
        page.mouse.move(20, 20)
        wait_for_text(page, "head-phone", "495")
        page.wait_for_timeout(300)
        restored = page.evaluate(
            """() => [document.getElementById("sticky-phone").textContent,
                      document.getElementById("sticky-phone").getAttribute("href"),
                      document.getElementById("copied").textContent]"""
        )
    finally:
        state.numbers = None
    assert copies["sticky"] == copies["head"] == "+7 (499) 000-00-02", copies
    assert copies["href"] == "tel:+74990000002", copies
    assert "499\u00a0000-00-02" in copies["copied"] and "000-00-01" not in copies["copied"], copies
    assert restored == [TEXTS["head-phone"], HREFS["head-phone"], TEXTS["hero-line"]], restored
    assert watched.problems(server.url) == []


def test_a_copy_of_one_of_two_numbers_sharing_a_tracking_number_gets_its_own_back(
    new_page: Callable[[], Watched], demo: Server, stub: tuple[Server, StubState]
) -> None:
    """A pool without `replaces` gives one tracking number for each of the site's numbers: a
    copy of the partner line's must come back as the partner line, not as the main one. (Two
    of the site's numbers written alike and swapped alike cannot be told apart in a copy; it
    comes back as the first of them, a number of the site's still.)"""
    server, state = stub
    shared = {"number": "+74990000001", "display": "+7 499 000-00-01"}
    state.mode, state.requests[:], state.posts[:] = "ok", [], []
    state.numbers = [
        {"replace": "+7 495 765-43-21", "own": "+74957654321", **shared},
        {"replace": "+7 495 123-45-67", "own": "+74951234567", **shared},
    ]
    watched = new_page()
    page = watched.page
    try:
        open_demo(watched, demo, server.url, CPC)
        wait_for_text(page, "head-phone", "000-00-01")
        page.evaluate(
            """() => {
              const line = document.createElement("p");
              line.id = "partner-line";
              line.textContent = "Partners: 8 495 765 43 21";
              document.body.append(line);
            }"""
        )
        wait_for_text(page, "partner-line", "499")
        page.evaluate(
            """() => {
              const clone = document.getElementById("partner-line").cloneNode(true);
              clone.id = "partner-copy";
              document.body.append(clone);
            }"""
        )
        page.wait_for_timeout(300)
        state.numbers = []
        page.mouse.move(10, 10)
        wait_for_text(page, "partner-line", "495")
        page.wait_for_timeout(300)
        copy = page.evaluate("() => document.getElementById('partner-copy').textContent")
    finally:
        state.numbers = None
    assert copy == "Partners: 8 495 765 43 21"
    assert watched.problems(server.url) == []


def test_a_page_restored_from_the_back_forward_cache_asks_for_its_number_again(
    bfcache_browser: Any, demo: Server, stub: tuple[Server, StubState]
) -> None:
    """Back to a page kept in the browser's back/forward cache (timers frozen meanwhile, no
    load event): the number it shows may have been leased to another visitor since. The
    return is activity (the page's visibilitychange, which Chromium fires before pageshow), so
    the widget asks again without waiting for the visitor to move: no pageshow handler is
    needed. Fails without the visibilitychange handler."""
    server, state = stub
    state.mode, state.requests[:], state.posts[:], state.numbers = "ok", [], [], None
    context = bfcache_browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        watched = watch(context.new_page())
        page = watched.page
        page.add_init_script(
            "addEventListener('pageshow', e => { window.restored = e.persisted; })"
        )
        open_demo(watched, demo, server.url, CPC)
        wait_for_text(page, "head-phone", "000-00-01")
        state.numbers = [{**STUB_NUMBER, "number": "+74990000002", "display": "+7 499 000-00-02"}]
        page.goto(f"{demo.url}/contacts.html?tracker={server.url}")
        page.wait_for_timeout(1500)  # longer than the stub's ping interval
        sent = len(state.requests)
        page.go_back(wait_until="commit")  # no load event on a restore
        page.wait_for_function("() => window.restored !== undefined")
        assert page.evaluate("window.restored") is True  # from the cache, not loaded again
        page.wait_for_function(
            "() => document.getElementById('head-phone').textContent.includes('000-00-02')",
            timeout=5_000,
        )
        assert len(state.requests) > sent
        assert watched.problems(server.url) == []
    finally:
        state.numbers = None
        context.close()
