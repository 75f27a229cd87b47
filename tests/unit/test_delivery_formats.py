"""What each delivery says (issue 14), format by format, on a hand-built call: calltrack's json
body, Bitrix24's crm.lead.add and GA4's Measurement Protocol event. The expected bodies are
written out here in full."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import ClientResponseError, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from attribution.journey import JourneyCall, JourneyVisit, assemble
from integrations.bitrix24 import lead_request
from integrations.delivery import PendingEvent, Skip
from integrations.events import Event
from integrations.ga4 import event_request
from integrations.webhook_json import webhook_body
from integrations.worker import failure_text
from pbx.settings import Ga4

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86_400.0
LINK = "https://calls.example/recordings/7?expires=1800604800&sig=" + "a" * 64


def call(**changes: Any) -> dict[str, Any]:
    """A call as staff_api.call_json shows it (the fields the formats read, and a few more)."""
    return {
        "id": 7,
        "linkedid": "1800000000.7",
        "caller": "+79161234567",
        "did": "+74990000001",
        "started_at": "2027-01-15T08:00:00+00:00",
        "status": "answered",
        "talk_seconds": 95.4,
        "attribution": "session",
        "site": "main",
        "pool": "paid",
        "source": "google",
        "medium": "cpc",
        "campaign": "spring",
        "term": "sofa",
        "content": None,
        "click_ids": {"gclid": "Cj0abc"},
        "landing_url": "https://shop.test/sofas?utm_source=google",
        "referrer": "https://www.google.com/",
        "visit_number": 2,
        "pages_viewed": 4,
        "first_source": "yandex",
        "first_medium": "organic",
        "first_campaign": None,
        "sale_cents": None,
        "crm_sale_cents": 0,
        "recording_url": "https://calls.example/api/v1/calls/7/recording",
        **changes,
    }


def pending(event: Event = Event.CALL_COMPLETED, target: str = "crm") -> PendingEvent:
    return PendingEvent(
        id=1,
        event_id="e" * 32,
        target=target,
        event=event,
        call_id=7,
        sale_reference="deal-1" if event is Event.SALE_CREATED else None,
        created_at=T0 + 100,
        attempts=0,
    )


def visit(days_before: float, source: str, medium: str) -> JourneyVisit:
    return JourneyVisit(
        session_id=f"s{days_before}",
        started_at=T0 - days_before * DAY,
        site="main",
        source=source,
        medium=medium,
        campaign=None,
        term=None,
        landing_url="https://shop.test/",
        referrer=None,
    )


# --- json ------------------------------------------------------------------------------------


def test_the_json_body_carries_the_call_its_attribution_link_and_journey() -> None:
    journey = assemble(
        JourneyCall(7, T0, "+79161234567", "answered", "session", "google", "cpc", "spring"),
        [visit(12, "yandex", "organic"), visit(0.5, "google", "cpc")],
        [JourneyCall(3, T0 - 5 * DAY, "+79161234567", "missed", "session", None, None, None)],
    )
    sale = {
        "reference": "deal-1",
        "amount": "1500.00",
        "currency": "RUB",
        "caller": "+79161234567",
        "at": "2027-01-16T08:00:00+00:00",
    }
    body = json.loads(
        webhook_body(pending(Event.SALE_CREATED), call(), LINK, journey, sale).decode()
    )
    assert body == {
        "event": "sale.created",
        "event_id": "e" * 32,
        "created_at": "2027-01-15T08:01:40+00:00",
        "call": {**call(), "recording_url": LINK},  # the signed link, not the staff route
        "attribution": {
            "method": "session",
            "site": "main",
            "pool": "paid",
            "source": "google",
            "medium": "cpc",
            "campaign": "spring",
            "term": "sofa",
            "content": None,
            "click_ids": {"gclid": "Cj0abc"},
            "landing_page": "https://shop.test/sofas?utm_source=google",
            "referrer": "https://www.google.com/",
            "visit_number": 2,
            "pages_viewed": 4,
            "first_touch": {"source": "yandex", "medium": "organic", "campaign": None},
        },
        "recording_url": LINK,
        "journey": {
            "visits": 2,
            "first_visit_at": "2027-01-03T08:00:00+00:00",
            "days_since_first_visit": 12.0,
            "first_channel": {"source": "yandex", "medium": "organic", "campaign": None},
            "last_channel": {"source": "google", "medium": "cpc", "campaign": None},
            "channels_back": ["google"],
            "earlier_calls": 1,
        },
        "sale": sale,
    }


def test_a_call_without_visits_has_no_journey_nor_first_touch_nor_sale() -> None:
    static = call(attribution="static", source="billboard", medium="offline", first_source=None)
    body = json.loads(webhook_body(pending(), static, None, None, None).decode())
    assert body["journey"] is None and body["recording_url"] is None
    assert body["attribution"]["first_touch"] is None and "sale" not in body
    assert body["event"] == "call.completed"


# --- bitrix24 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://shop.bitrix24.ru/rest/1/k3y/", "https://shop.bitrix24.ru/rest/1/k3y"]
)
def test_bitrix24_adds_a_lead_with_the_utm_fields(url: str) -> None:
    outgoing = lead_request(url, "s" * 32, pending(), call(), LINK)
    assert outgoing.url == "https://shop.bitrix24.ru/rest/1/k3y/crm.lead.add.json"
    assert outgoing.headers["Content-Type"] == "application/json"
    assert json.loads(outgoing.body) == {
        "fields": {
            "TITLE": "Call from +79161234567 (google / cpc)",
            "PHONE": [{"VALUE": "+79161234567", "VALUE_TYPE": "WORK"}],
            "SOURCE_ID": "CALL",
            "SOURCE_DESCRIPTION": "calltrack call 7 to +74990000001, matched by session;"
            " landing page https://shop.test/sofas?utm_source=google;"
            " referrer https://www.google.com/",
            "UTM_SOURCE": "google",
            "UTM_MEDIUM": "cpc",
            "UTM_CAMPAIGN": "spring",
            "UTM_TERM": "sofa",
            "COMMENTS": f"answered, talk 95 s\nRecording: {LINK}",
            "ORIGINATOR_ID": "calltrack",
            "ORIGIN_ID": "e" * 32,
        },
        "params": {"REGISTER_SONET_EVENT": "Y"},
    }


def test_bitrix24_names_an_unattributed_call_by_its_number_only() -> None:
    unknown = call(
        attribution="unknown", source=None, medium=None, campaign=None, term=None,
        landing_url=None, referrer=None, status="missed", talk_seconds=0,
    )  # fmt: skip
    fields = json.loads(lead_request("https://b.test/rest/1/k/", None, pending(), unknown, None)
                        .body)["fields"]  # fmt: skip
    assert fields["TITLE"] == "Call from +79161234567"
    assert fields["SOURCE_DESCRIPTION"] == "calltrack call 7 to +74990000001, matched by unknown"
    assert fields["COMMENTS"] == "missed, talk 0 s"
    assert not any(name.startswith("UTM_") for name in fields)


@pytest.mark.parametrize("event", [Event.CALL_UPDATED, Event.SALE_CREATED])
def test_bitrix24_makes_leads_of_completed_calls_only(event: Event) -> None:
    with pytest.raises(Skip, match=r"call\.completed only"):
        lead_request("https://b.test/rest/1/k/", None, pending(event), call(), LINK)


# --- GA4 -------------------------------------------------------------------------------------

GA4 = Ga4(measurement_id="G-TEST1234", api_secret="secret/of+stream", endpoint="http://ga.test/mp")


def raw(**changes: Any) -> dict[str, Any]:
    """A call as storage reads it (times as Unix seconds)."""
    return call(started_at=T0, **changes)


def test_ga4_posts_a_phone_call_event_for_the_visit_client_id() -> None:
    outgoing = event_request(GA4, raw(), "123456.7654321", "RUB", T0 + 60)
    assert outgoing.url == (
        "http://ga.test/mp?measurement_id=G-TEST1234&api_secret=secret%2Fof%2Bstream"
    )
    assert outgoing.secret is None  # GA4 authenticates by the api_secret, not our signature
    assert json.loads(outgoing.body) == {
        "client_id": "123456.7654321",
        "timestamp_micros": 1_800_000_000_000_000,
        "events": [
            {
                "name": "phone_call",
                "params": {
                    "source": "google",
                    "medium": "cpc",
                    "campaign": "spring",
                    "answered": 1,
                    "talk_seconds": 95,
                },
            }
        ],
    }


def test_ga4_sends_the_value_of_a_sale_and_cuts_long_values() -> None:
    sold = raw(status="missed", campaign="c" * 150, sale_cents=50_000, crm_sale_cents=100_050)
    params = json.loads(event_request(GA4, sold, "1.2", "RUB", T0).body)["events"][0]["params"]
    assert params["value"] == 1500.5 and params["currency"] == "RUB"
    assert params["answered"] == 0 and params["campaign"] == "c" * 100


def test_ga4_skips_calls_without_a_client_id_or_older_than_72_hours() -> None:
    with pytest.raises(Skip, match="no GA client id"):
        event_request(GA4, raw(), None, "RUB", T0)
    assert event_request(GA4, raw(), "1.2", "RUB", T0 + 72 * 3600)
    with pytest.raises(Skip, match="72 h"):
        event_request(GA4, raw(), "1.2", "RUB", T0 + 72 * 3600 + 1)


def test_a_failure_names_no_url_path_bitrix24s_key_is_in() -> None:
    """aiohttp names the URL in some errors (a malformed answer); Bitrix24's incoming-webhook
    key and GA4's secret are in theirs, and failures are shown on the deliveries page."""
    info = RequestInfo(
        URL("https://shop.bitrix24.ru/rest/1/k3yfromb24/crm.lead.list.json"),
        "POST",
        CIMultiDictProxy(CIMultiDict()),
    )
    text = failure_text(ClientResponseError(info, (), status=400, message="Bad Request"))
    assert "k3yfromb24" not in text and "https://shop.bitrix24.ru/…" in text
    assert text.startswith("ClientResponseError: 400, message='Bad Request'")
