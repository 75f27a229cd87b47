"""The ad platforms' upload formats: the exact header and a row for a hand-built call."""

from __future__ import annotations

import calendar
from dataclasses import replace

from integrations import google_ads, metrica
from integrations.conversions import ConversionCall
from integrations.google_ads import Counted
from pbx.staff_ui.export import upload_text

# 2027-01-15 08:00:00 UTC, 11:00:00 in Moscow (UTC+3 all year)
AT = 1_800_000_000.0
CALL = ConversionCall(
    id=42,
    started_at=AT,
    did="+74990000001",
    answered=True,
    ring_seconds=12.4,
    talk_seconds=95.6,
    first_time=True,
    static=False,
    lead=True,
    sale_cents=150000,
    click_ids={"gclid": "CjwKCAiA-gclid", "yclid": "8842"},
    ym_client_id="1700000000123456789",
    landing_url="https://shop.test/implants?utm_source=google",
    tags=("lead", "implants"),
)


def ads(calls: list[ConversionCall], counted: Counted = Counted.LEADS) -> str:
    out = google_ads.export(
        calls,
        conversion_name="Phone call",
        counted=counted,
        default_value_cents=50000,
        currency="RUB",
        timezone="Europe/Moscow",
    )
    return upload_text(out.lines)


def test_google_ads_template_header_and_a_row() -> None:
    assert ads([CALL]).splitlines() == [
        "Parameters:TimeZone=Europe/Moscow",
        "Google Click ID,GBRAID,WBRAID,Conversion Name,Conversion Time,Conversion Value,"
        "Conversion Currency",
        "CjwKCAiA-gclid,,,Phone call,2027-01-15 11:00:00+0300,1500.00,RUB",
    ]


def test_google_ads_gbraid_wbraid_default_value_and_what_is_left_out() -> None:
    app = replace(CALL, click_ids={"gbraid": "0AAAA-g"}, sale_cents=0)
    web = replace(CALL, click_ids={"wbraid": "Cl0KCQ-w"}, answered=False, lead=False)
    direct = replace(CALL, click_ids={"yclid": "1"})
    out = google_ads.export(
        [app, web, direct],
        conversion_name="Phone call",
        counted=Counted.LEADS,
        default_value_cents=50000,
        currency="RUB",
        timezone="Europe/Moscow",
    )
    assert out.lines[2:] == [
        ["", "0AAAA-g", "", "Phone call", "2027-01-15 11:00:00+0300", "500.00", "RUB"]
    ]
    assert out.rows == 1
    assert dict(out.left_out) == {
        "not counted (google_ads.calls: leads)": 1,
        "without a Google click id (gclid, gbraid, wbraid)": 1,
    }
    assert out.summary() == (
        "1 row; left out: 1 call not counted (google_ads.calls: leads),"
        " 1 call without a Google click id (gclid, gbraid, wbraid)"
    )
    assert ads([web], Counted.ANSWERED).count("\n") == 2  # preamble and header only
    assert ads([web], Counted.ALL).splitlines()[2] == (
        ",,Cl0KCQ-w,Phone call,2027-01-15 11:00:00+0300,1500.00,RUB"
    )


def test_google_ads_times_name_their_instant_in_the_hour_the_clocks_go_back() -> None:
    """Berlin set its clocks back from 03:00 CEST to 02:00 CET on 2026-10-25: 02:30 local
    happened twice, an hour apart. With only the Parameters line's zone, both calls read as one
    instant (Google took either); each row now carries its own offset."""
    first = calendar.timegm((2026, 10, 25, 0, 30, 0))  # 02:30 CEST
    times = [
        line[4]
        for line in google_ads.export(
            [replace(CALL, started_at=at) for at in (first, first + 3600)],
            conversion_name="Call",
            counted=Counted.ALL,
            default_value_cents=None,
            currency="EUR",
            timezone="Europe/Berlin",
        ).lines[2:]
    ]
    assert times == ["2026-10-25 02:30:00+0200", "2026-10-25 02:30:00+0100"]


def test_google_ads_without_a_value_leaves_value_and_currency_empty() -> None:
    out = google_ads.export(
        [replace(CALL, sale_cents=0)],
        conversion_name="Call",
        counted=Counted.ALL,
        default_value_cents=None,
        currency="RUB",
        timezone="UTC",
    )
    assert out.lines == [
        ["Parameters:TimeZone=UTC"],
        google_ads.HEADER,
        ["CjwKCAiA-gclid", "", "", "Call", "2027-01-15 08:00:00+0000", "", ""],
    ]


def metrica_text(
    calls: list[ConversionCall], now: float = AT + 3600, by: str = metrica.CLIENT_ID
) -> str:
    out = metrica.export(
        calls, now=now, currency="RUB", public_url="https://calls.shop.test/", by=by
    )
    return upload_text(out.lines)


def test_metrica_header_and_a_row() -> None:
    assert metrica_text([CALL]).splitlines() == [
        "ClientId,DateTime,StaticCall,Price,Currency,PhoneNumber,TalkDuration,"
        "HoldDuration,CallMissed,Tag,FirstTimeCaller,URL,CallTrackerURL",
        '1700000000123456789,1800000000,0,1500.00,RUB,+74990000001,96,12,0,"lead, implants",1,'
        "https://shop.test/implants?utm_source=google,https://calls.shop.test/calls/42",
    ]


def test_metrica_by_yclid_names_the_click_and_a_missed_repeat_call() -> None:
    missed = replace(
        CALL,
        ym_client_id=None,
        answered=False,
        talk_seconds=0.0,
        ring_seconds=31.0,
        first_time=False,
        sale_cents=0,
        tags=(),
        landing_url=None,
    )
    assert metrica_text([missed], by=metrica.YCLID).splitlines() == [
        "Yclid,DateTime,StaticCall,Price,Currency,PhoneNumber,TalkDuration,"
        "HoldDuration,CallMissed,Tag,FirstTimeCaller,URL,CallTrackerURL",
        "8842,1800000000,0,,,+74990000001,0,31,1,,0,,https://calls.shop.test/calls/42",
    ]
    # a ClientID file leaves out the call Metrica knows only by its click
    assert metrica_text([missed]).splitlines()[1:] == []


def test_metrica_leaves_out_calls_past_its_21_day_window_and_without_an_id() -> None:
    day = 86400.0
    now = AT + 21 * day
    inside = replace(CALL, started_at=now - 21 * day + 1)
    outside = replace(CALL, started_at=now - 21 * day - 1)
    unknown = replace(CALL, ym_client_id=None, click_ids={"gclid": "G"})
    out = metrica.export([inside, outside, unknown], now=now, currency="RUB", public_url=None)
    assert [line[1] for line in out.lines[1:]] == [str(int(now - 21 * day + 1))]
    assert out.lines[1][-1] == ""  # no public_url: no link to the call
    assert dict(out.left_out) == {
        "older than Metrica's 21-day upload window": 1,
        "without a Metrica ClientID": 1,
    }


def test_cells_are_guarded_against_spreadsheet_formulas() -> None:
    hostile = replace(CALL, tags=("=HYPERLINK(1)",), landing_url="https://x.test/?a=1,@SUM(1)")
    row = metrica_text([hostile]).splitlines()[1]
    assert "'=HYPERLINK(1)" in row and ",'@SUM(1)" in row
