"""The pure rules of attribution/: whose a call is, which numbers a visit sees, when a session
goes on. No storage: plain values in, decisions out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import Tracking
from attribution.numbering import Numbering, NumberKind, StaticSource, TrackedNumber
from attribution.owner import Attribution, Holder, SessionFacts, attribute, needs_holder
from attribution.sessions import SESSION_IDLE_TIMEOUT, SessionRule, campaign_key
from attribution.site_plan import PoolPlan, SitePlan, SlotOutcome
from attribution.traffic import read_source
from pbx.settings import ConfigError, parse_settings
from tests.helpers import make_settings

POOL = TrackedNumber("+74990000001", NumberKind.POOL, "PJSIP/sales", "pool", "main", "paid")
FALLBACK = TrackedNumber("+74990000099", NumberKind.FALLBACK, "PJSIP/office", "fb", "main")
STATIC = TrackedNumber(
    "+74990000101",
    NumberKind.STATIC,
    "PJSIP/reception",
    "static",
    static=StaticSource("billboard", "offline", None),
)
HOLDER = Holder("s1", "v1", "main", "paid", 10.0, SessionFacts("google", "cpc"))


@pytest.mark.parametrize(
    ("number", "holder", "kind", "name"),
    [
        (STATIC, None, Attribution.STATIC, "[billboard]"),
        (FALLBACK, None, Attribution.FALLBACK, None),
        (POOL, HOLDER, Attribution.SESSION, "[cpc] google"),
        (POOL, None, Attribution.UNKNOWN, None),
        (None, None, Attribution.UNKNOWN, None),
    ],
)
def test_who_a_call_belongs_to(
    number: TrackedNumber | None, holder: Holder | None, kind: Attribution, name: str | None
) -> None:
    owner = attribute(number, holder)
    assert (owner.attribution, owner.caller_name) == (kind, name)
    assert needs_holder(number) is (number is POOL)


def test_numbering_knows_every_numbers_kind_and_line() -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    numbering = Numbering.from_settings(settings)
    kinds = {n.e164: n.kind for n in numbering}
    assert kinds["+74990000001"] is NumberKind.POOL
    assert kinds["+74990000099"] is NumberKind.FALLBACK
    assert kinds["+74990000101"] is NumberKind.STATIC
    assert numbering.real_line("+70000000000") == settings.forward_to


def test_a_session_ends_after_its_idle_time_to_the_millisecond() -> None:
    rule = SessionRule()
    assert rule.continues(0.0, SESSION_IDLE_TIMEOUT, b"")
    assert not rule.continues(0.0, SESSION_IDLE_TIMEOUT + 0.001, b"")


def test_a_new_campaign_starts_a_new_session_an_inner_page_does_not() -> None:
    rule = SessionRule()
    spring = read_source("https://s.test/?utm_source=g&utm_medium=cpc&utm_campaign=spring", None)
    # the session's key, from its own landing page: the same tags in another order
    key = campaign_key(
        read_source("https://s.test/a?utm_campaign=spring&utm_medium=cpc&utm_source=g", None)
    )
    assert rule.continues(0.0, 60.0, key, spring)
    autumn = read_source("https://s.test/?utm_source=g&utm_medium=cpc&utm_campaign=autumn", None)
    assert not rule.continues(0.0, 60.0, key, autumn)
    assert rule.continues(0.0, 60.0, key, read_source("https://s.test/prices", None))
    organic = read_source("https://s.test/", "https://www.google.com/")
    assert rule.continues(0.0, 60.0, key, organic)  # a search back to the site: same visit
    clicked = read_source("https://s.test/?gclid=NEW", None)
    assert not rule.continues(0.0, 60.0, key, clicked)


SALES, SERVICE = "+74951234567", "+74955550011"
PLAN = SitePlan(
    "main",
    {SALES: ["+7 495 123-45-67"], SERVICE: ["+7 495 555-00-11"]},
    (
        PoolPlan("ads-sales", "PJSIP/sales", (SALES,), None),
        PoolPlan("all", "PJSIP/office", (SALES, SERVICE), None),
    ),
    "+74990000099",
    "PJSIP/office",
)


def test_each_own_number_is_served_by_the_first_pool_that_replaces_it() -> None:
    slots = PLAN.slots(read_source("https://s.test/", None))
    assert [(s.pool, s.replaces) for s in slots] == [("ads-sales", (SALES,)), ("all", (SERVICE,))]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ads-sales", "all", "gone"]),
            st.sampled_from(list(Tracking)),
            st.sampled_from([None, "+74990000001", "+74990000002"]),
        ),
        max_size=3,
    )
)
def test_a_shown_number_always_rings_the_line_of_the_own_number_it_replaces(
    outcomes: list[tuple[str, Tracking, str | None]],
) -> None:
    lines = {p.name: p.line for p in PLAN.pools}
    replaces = {p.name: p.replaces for p in PLAN.pools} | {"gone": (SALES,)}
    shown = PLAN.shown([SlotOutcome(p, replaces[p], t, n) for p, t, n in outcomes])
    for own, number in shown.items():
        covering = [(p, t, n) for p, t, n in outcomes if own in replaces[p] and p in lines]
        if number == PLAN.fallback:  # only from a pool that rings the fallback's line
            assert any(
                lines[p] == PLAN.fallback_line and t in (Tracking.EXHAUSTED, Tracking.IP_CAP)
                for p, t, _n in covering
            )
        else:  # a number leased from a pool standing in for this own number
            assert (number, Tracking.TRACKED) in [(n, t) for _p, t, n in covering]


def test_replaces_must_name_an_own_number_with_its_line() -> None:
    text = """
forward_to: PJSIP/office
sites:
  - name: main
    origins: ["https://shop.test"]
    replace: ["+7 495 123-45-67"]
    pools:
      - name: sales
        replaces: ["+7 495 999-99-99"]
        numbers: ["+74990000001"]
"""
    with pytest.raises(ConfigError) as error:
        parse_settings(text, "calltrack.yaml")
    [problem] = error.value.problems
    assert (problem.line, problem.where) == (9, "sites[0].pools[0].replaces[0]")
    assert "not one of this site's own numbers" in problem.message


def test_an_own_number_the_site_no_longer_lists_is_not_shown() -> None:
    """A session started before `replace` lost the service number must not bring it back."""
    gone = "+74957770000"
    outcome = SlotOutcome("all", (SERVICE, gone), Tracking.TRACKED, "+74990000001")
    assert PLAN.shown([outcome]) == {SERVICE: "+74990000001"}
