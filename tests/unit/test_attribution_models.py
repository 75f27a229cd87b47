"""The attribution models, probable matches and money, on hand-built histories and generated ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import LeaseSpan
from attribution.models import (
    LOOKBACK,
    NOBODY,
    CallHistory,
    Credit,
    CreditKind,
    Touch,
    credit,
)
from attribution.money import MoneyError, cents_text, divide_cents, to_cents
from attribution.numbering import StaticSource
from attribution.probable import MAX_CANDIDATES, candidates
from attribution.reports import OTHER, PROBABLE, TOTAL, UNATTRIBUTED, UNSPLIT_COST, WEB, Model
from attribution.traffic import RESERVED_KEYS, read_source

DAY = 86400.0
BILLBOARD = Credit(CreditKind.STATIC, static=StaticSource("billboard", "offline", None))


def touch(
    sid: str, at: float, source: str = "google", medium: str = "cpc", ref: str | None = None
) -> Touch:
    return Touch(sid, at, "main", source, medium, referrer=ref)


def direct(sid: str, at: float) -> Touch:
    return touch(sid, at, "(direct)", "(none)")


# -- hand-built histories with a known answer ----------------------------------------------------


def test_last_is_what_the_call_was_matched_to() -> None:
    call = CallHistory(
        10 * DAY, Credit(CreditKind.SESSION, direct("b", 9 * DAY)), [touch("a", DAY)]
    )
    assert credit(call, Model.LAST) == call.matched


def test_first_is_the_visitors_first_visit_before_the_call() -> None:
    a, b, later = touch("a", DAY, "yandex", "organic"), touch("b", 5 * DAY), touch("c", 20 * DAY)
    call = CallHistory(10 * DAY, Credit(CreditKind.SESSION, b), [later, b, a])
    assert credit(call, Model.FIRST) == Credit(CreditKind.SESSION, a)


def test_a_known_caller_on_a_static_number_is_credited_to_their_first_visit_under_first() -> None:
    a = touch("a", DAY, "yandex", "organic")
    call = CallHistory(10 * DAY, BILLBOARD, [a])
    assert credit(call, Model.FIRST) == Credit(CreditKind.VISITOR, a)
    assert credit(call, Model.LAST) == BILLBOARD
    assert credit(call, Model.LAST_NON_DIRECT) == BILLBOARD


def test_an_unknown_caller_stays_unattributed_under_every_model() -> None:
    call = CallHistory(10 * DAY, NOBODY)
    assert {credit(call, m) for m in Model} == {NOBODY}


def test_last_non_direct_replaces_a_direct_visit_by_the_latest_earlier_source() -> None:
    old, paid, organic, now = (
        touch("old", DAY, "bing"),
        touch("paid", 50 * DAY),
        touch("org", 60 * DAY, "yandex", "organic"),
        direct("now", 70 * DAY),
    )
    call = CallHistory(70 * DAY + 60, Credit(CreditKind.SESSION, now), [old, paid, organic, now])
    assert credit(call, Model.LAST_NON_DIRECT) == Credit(CreditKind.SESSION, organic)


def test_last_non_direct_treats_the_sites_own_hosts_as_direct() -> None:
    source = touch("src", DAY, "yandex", "organic")
    internal = touch("int", 2 * DAY, "blog.shop.test", "referral", ref="blog.shop.test")
    call = CallHistory(2 * DAY + 60, Credit(CreditKind.SESSION, internal), [source, internal])
    assert credit(call, Model.LAST_NON_DIRECT, {"blog.shop.test"}).touch == source
    assert credit(call, Model.LAST_NON_DIRECT).touch == internal


def test_last_non_direct_credits_a_tagged_link_from_the_sites_own_hosts() -> None:
    """The blog links to the shop with UTM tags (or a click id): the tags name the source, as
    in GA4 and Metrica, so the visit is not direct although its referrer is the business's."""
    source = touch("src", DAY, "yandex", "organic")
    tagged = touch("tag", 2 * DAY, "blog", "email", ref="blog.shop.test")
    clicked = touch("clk", 3 * DAY, "google", "cpc", ref="blog.shop.test")
    for visit in (tagged, clicked):
        call = CallHistory(
            visit.started_at + 60, Credit(CreditKind.SESSION, visit), [source, visit]
        )
        assert credit(call, Model.LAST_NON_DIRECT, {"blog.shop.test"}).touch == visit
    internal = touch("int", 4 * DAY, "blog.shop.test", "referral", ref="blog.shop.test")
    call = CallHistory(4 * DAY + 60, Credit(CreditKind.SESSION, internal), [tagged, internal])
    assert credit(call, Model.LAST_NON_DIRECT, {"blog.shop.test"}).touch == tagged


def test_last_non_direct_looks_back_at_most_the_lookback() -> None:
    old = touch("old", 0.0)
    now = direct("now", LOOKBACK + DAY)
    call = CallHistory(LOOKBACK + DAY, Credit(CreditKind.SESSION, now), [old, now])
    assert credit(call, Model.LAST_NON_DIRECT).touch == now


# -- invariants over generated histories --------------------------------------------------------

sources = st.sampled_from([("google", "cpc"), ("yandex", "organic"), ("(direct)", "(none)")])
visits = st.lists(
    st.tuples(st.floats(0, 200 * DAY), sources), max_size=8, unique_by=lambda v: v[0]
).map(lambda vs: [touch(f"s{i}", at, *src) for i, (at, src) in enumerate(vs)])


@st.composite
def histories(draw: st.DrawFn) -> CallHistory:
    history = draw(visits)
    at = draw(st.floats(0, 220 * DAY))
    held = [t for t in history if t.started_at <= at]
    kind = draw(st.sampled_from(["session", "static", "none"]))
    if kind == "session" and held:
        return CallHistory(at, Credit(CreditKind.SESSION, draw(st.sampled_from(held))), history)
    return CallHistory(at, BILLBOARD if kind == "static" else NOBODY, history)


@given(histories())
def test_no_model_credits_a_visit_after_the_call(call: CallHistory) -> None:
    for model in Model:
        got = credit(call, model)
        assert got.touch is None or got.touch.started_at <= call.at


@given(histories())
def test_first_is_the_earliest_visit_and_last_non_direct_changes_only_direct_visits(
    call: CallHistory,
) -> None:
    earlier = [t for t in call.visits if t.started_at <= call.at]
    first = credit(call, Model.FIRST).touch
    if earlier:
        assert first is not None and first.started_at == min(t.started_at for t in earlier)
    lnd = credit(call, Model.LAST_NON_DIRECT)
    matched = call.matched.touch
    if matched is None or not matched.is_direct():
        assert lnd == call.matched
    elif lnd.touch != matched:
        assert lnd.touch is not None and not lnd.touch.is_direct()
        assert lnd.touch.started_at <= matched.started_at
        assert lnd.kind is call.matched.kind


# -- probable matches ----------------------------------------------------------------------------


def span(session: str, ended: float) -> LeaseSpan:
    return LeaseSpan(f"l-{session}-{ended}", "+74990000001", session, ended - 600, ended)


def test_one_candidate_released_a_minute_before_a_15_minute_window() -> None:
    [only] = candidates([span("a", 1000 - 60)], 1000.0, 900.0)
    assert only.session_id == "a" and only.likelihood == pytest.approx(1 - 60 / 900, abs=1e-4)


def test_candidates_are_within_the_window_latest_release_first() -> None:
    spans = [span("old", 0.0), span("a", 900.0), span("b", 950.0), span("after", 1001.0)]
    found = candidates(spans, 1000.0, 900.0)
    assert [c.session_id for c in found] == ["b", "a"]
    assert found[0].likelihood > found[1].likelihood


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.floats(0, 2000)), max_size=20),
    st.floats(1, 1000),
)
def test_likelihoods_are_shares_below_one(ends: list[tuple[str, float]], window: float) -> None:
    found = candidates([span(s, t) for s, t in ends], 1500.0, window)
    assert len(found) <= MAX_CANDIDATES
    assert len({c.session_id for c in found}) == len(found)
    assert all(1500.0 - window <= c.released_at < 1500.0 for c in found)
    assert [c.released_at for c in found] == sorted((c.released_at for c in found), reverse=True)
    assert sum(c.likelihood for c in found) <= 1.0 + 1e-3


# -- money ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "cents"),
    [
        (1500, 150000),
        ("1500.00", 150000),
        ("1500.5", 150050),
        ("1 500,50", 150050),
        ("1,234.56", 123456),
        ("1.234,56", 123456),
        ("12,345,678.90", 1234567890),
        ("0,99", 99),
        ("0.500", 50),  # no thousands group starts with 0
        (0, 0),
        (12.34, 1234),
    ],
)
def test_amounts_are_read_as_whole_cents(typed: object, cents: int) -> None:
    assert to_cents(typed) == cents


@pytest.mark.parametrize(
    "typed",
    # "1e999999": too large to multiply at all (decimal.Overflow, a 500 on the CRM API)
    [
        "abc",
        "1.234",
        "1,500",
        "12,345",
        "1.500",  # 1500 in a German or Russian file, 1.50 elsewhere: was read as 1.50
        "12.000",
        "1.500.000",
        -5,
        "-1",
        True,
        None,
        "nan",
        "inf",
        10**12,
        [1],
        "1e999999",
    ],
)
def test_bad_amounts_are_refused_with_a_reason(typed: object) -> None:
    with pytest.raises(MoneyError):
        to_cents(typed)


def test_cents_are_written_and_divided_exactly() -> None:
    assert cents_text(150005) == "1500.05" and cents_text(-5) == "-0.05"
    assert divide_cents(1000, 3) == 333 and divide_cents(5, 2) == 2 and divide_cents(7, 2) == 4
    assert divide_cents(100, 0) is None


def test_a_visitors_tag_cannot_spell_a_row_of_the_report() -> None:
    assert {UNATTRIBUTED, PROBABLE, UNSPLIT_COST, OTHER, WEB, TOTAL} == RESERVED_KEYS
    for reserved in RESERVED_KEYS:
        source = read_source(
            f"http://shop.test/?utm_source={reserved}&utm_campaign={reserved}", None
        )
        assert (source.source, source.campaign) == (f"utm:{reserved}", f"utm:{reserved}")
