from __future__ import annotations

import pytest

from attribution.rules import choose_pool
from attribution.traffic import RESERVED_KEYS, read_source
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


@pytest.mark.parametrize("row", sorted(RESERVED_KEYS))
def test_a_referrer_cannot_name_one_of_the_reports_own_rows(row: str) -> None:
    """UTM tags spelling "(unattributed)" were kept apart, a referrer's host was not: a forged
    referrer's traffic, and the calls it brought, hid in the row of calls nobody was credited
    with, which its drill-down then left out."""
    source = read_source("https://shop.test/", f"http://{row}/")
    assert (source.source, source.medium) == (f"utm:{row}", "referral")
    assert read_source("https://shop.test/", "https://news.example/a").source == "news.example"
