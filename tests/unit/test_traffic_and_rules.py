from __future__ import annotations

import pytest

from attribution.leasing import display_like
from attribution.phone import PhoneNumberError, to_e164
from attribution.rules import choose_pool
from attribution.traffic import read_source
from pbx.settings import Pool, PoolRule


@pytest.mark.parametrize(
    ("url", "referrer", "expected"),
    [
        (
            "https://s.test/?utm_source=google&utm_medium=cpc&utm_campaign=x",
            None,
            ("google", "cpc", "x"),
        ),
        ("https://s.test/?gclid=abc", None, ("google", "cpc", None)),
        ("https://s.test/?yclid=123", "https://yandex.ru/", ("yandex", "cpc", None)),
        ("https://s.test/", "https://www.google.com/search?q=plumber", ("google", "organic", None)),
        ("https://s.test/", "https://yandex.ru/search/?text=x", ("yandex", "organic", None)),
        (
            "https://s.test/",
            "https://blog.example.org/post",
            ("blog.example.org", "referral", None),
        ),
        ("https://s.test/", "https://s.test/other", ("(direct)", "(none)", None)),
        ("https://s.test/", None, ("(direct)", "(none)", None)),
        ("https://s.test/?utm_source=newsletter", None, ("newsletter", "(none)", None)),
    ],
)
def test_source_is_read_like_analytics_tools(
    url: str, referrer: str | None, expected: tuple[str, str, str | None]
) -> None:
    source = read_source(url, referrer)
    assert (source.source, source.medium, source.campaign) == expected


def test_click_ids_and_landing_are_kept() -> None:
    source = read_source("https://s.test/prices?gclid=G1&yclid=Y1&utm_term=pipes", None)
    assert source.click_ids == {"gclid": "G1", "yclid": "Y1"}
    assert source.term == "pipes"
    assert source.landing_path == "/prices"


def test_hostile_url_does_not_raise() -> None:
    assert read_source("http://[::1/?utm_source=x", "http://[bad").source in ("x", "(direct)")


def pools() -> list[Pool]:
    return [
        Pool(name="paid", when=PoolRule(utm_medium=["cpc", "ppc"]), numbers=["+74990000001"]),
        Pool(name="yandex", when=PoolRule(referrer_host=["*yandex.*"]), numbers=["+74990000002"]),
        Pool(name="promo", when=PoolRule(landing_path=["/promo/*"]), numbers=["+74990000003"]),
        Pool(name="all", numbers=["+74990000004"]),
    ]


@pytest.mark.parametrize(
    ("url", "referrer", "pool"),
    [
        ("https://s.test/?utm_medium=CPC", None, "paid"),
        ("https://s.test/?gclid=1", None, "paid"),  # derived medium counts
        ("https://s.test/", "https://yandex.ru/", "yandex"),
        ("https://s.test/promo/sale", None, "promo"),
        ("https://s.test/", None, "all"),
    ],
)
def test_first_matching_pool_wins(url: str, referrer: str | None, pool: str) -> None:
    chosen = choose_pool(pools(), read_source(url, referrer))
    assert chosen is not None and chosen.name == pool


def test_no_matching_pool_keeps_the_sites_number() -> None:
    only_paid = pools()[:1]
    assert choose_pool(only_paid, read_source("https://s.test/", None)) is None


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("+7 (495) 123-45-67", "+74951234567"),
        ("8 495 1234567", "+74951234567"),
        ("8\u00a0495\u00a0123\u201145\u201167".replace("\u2011", "-"), "+74951234567"),
        ("+74951234567", "+74951234567"),
        ("0049 30 1234567", "+49301234567"),
    ],
)
def test_phone_numbers_normalise_to_e164(written: str, e164: str) -> None:
    assert to_e164(written) == e164


@pytest.mark.parametrize("bad", ["", "123", "+0 123 456 789", "phone", "+7 495 123 45 67 89 01 23"])
def test_bad_phone_numbers_are_refused(bad: str) -> None:
    with pytest.raises(PhoneNumberError):
        to_e164(bad)


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("+7 (495) 123-45-67", "+7 (499) 000-00-01"),
        ("8 495 1234567", "8 499 0000001"),
        ("8\u00a0(495)\u00a0123-45-67", "8\u00a0(499)\u00a0000-00-01"),
        ("+74951234567", "+74990000001"),
        ("+1 (212) 555-0100", "+74990000001"),  # another country cannot wear this style
    ],
)
def test_tracking_number_wears_the_sites_style(template: str, shown: str) -> None:
    assert display_like(template, "+74990000001") == shown
