"""Phone numbers: reading them as written in several countries, and showing one like another."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from attribution.phone import (
    PhoneNumberError,
    caller_forms,
    caller_number,
    caller_search,
    display_like,
    to_e164,
)


@pytest.mark.parametrize(
    ("written", "region", "e164"),
    [
        ("+7 (495) 123-45-67", None, "+74951234567"),
        ("+74951234567", None, "+74951234567"),
        ("0049 30 1234567", None, "+49301234567"),  # 00: the international prefix
        ("+1 (212) 555-0100", None, "+12125550100"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("74951234567", None, "+74951234567"),  # E.164 without its + (carriers send it)
        ("8 495 1234567", "RU", "+74951234567"),  # Russia's trunk prefix
        ("8\u00a0495\u00a0123-45-67", "RU", "+74951234567"),
        ("(495) 123-45-67", "RU", "+74951234567"),
        ("7 495 123 45 67", "RU", "+74951234567"),
        ("+49 30 1234567", "RU", "+49301234567"),  # a country code wins over the region
        ("030 1234567", "DE", "+49301234567"),  # Germany's trunk prefix 0
        ("0049 30 1234567", "DE", "+49301234567"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("1 212 555 0100", "US", "+12125550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("74951234567", "DE", "+74951234567"),  # no German number: a carrier's bare E.164
    ],
)
def test_numbers_are_read_as_written_in_their_country(
    written: str, region: str | None, e164: str
) -> None:
    assert to_e164(written, region) == e164


@pytest.mark.parametrize(
    ("bad", "region", "why"),
    [
        ("+7499000001", None, "too few digits"),  # passed the hand-written parser
        ("+7499000001", "RU", "too few digits"),
        ("+7 495 123 45 67 89 01 23", None, "too many digits"),
        ("+1 (212) 055-0100", None, "numbering plan"),  # US exchange codes never start with 0
        ("8 495 1234567", None, "no country code"),  # Russia is no longer assumed
        ("030 1234567", None, "no country code"),
        ("8 495 12345", "RU", "can exist"),
        ("030 12", "DE", "numbering plan"),
        ("+0 123 456 789", None, "no country has this code"),
        ("123", None, r"too few digits \(\+1, US\)"),
        ("", None, "not a phone number"),
        ("phone", "RU", "not a phone number"),
        ("+7 (495) 123-45-67, ext. 2", None, "extension"),
    ],
)
def test_impossible_numbers_are_refused_with_the_reason(
    bad: str, region: str | None, why: str
) -> None:
    with pytest.raises(PhoneNumberError, match=why):
        to_e164(bad, region)


def test_bare_digits_are_not_taken_for_a_country_code_when_asked() -> None:
    """'84951234567' is a Vietnamese number in E.164; a person writing a config means Moscow."""
    assert to_e164("84951234567") == "+84951234567"
    with pytest.raises(PhoneNumberError, match="no country code"):
        to_e164("84951234567", bare_e164=False)
    assert to_e164("84951234567", "RU", bare_e164=False) == "+74951234567"


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("+7 (495) 123-45-67", "+7 (499) 000-00-01"),
        ("8 495 1234567", "8 499 0000001"),
        ("8\u00a0(495)\u00a0123-45-67", "8\u00a0(499)\u00a0000-00-01"),
        ("+74951234567", "+74990000001"),
        ("84951234567", "84990000001"),
        ("(495) 123-45-67", "(499) 000-00-01"),  # national, read in the number's country
        ("7 495 123 45 67", "7 499 000 00 01"),
        # another country cannot wear this style: the numbering plan's international form
        ("+1 (212) 555-0100", "+7 499 000-00-01"),
        ("0049 30 1234567", "+7 499 000-00-01"),
    ],
)
def test_tracking_number_wears_the_sites_style(template: str, shown: str) -> None:
    assert display_like(template, "+74990000001") == shown


@pytest.mark.parametrize(
    ("template", "number", "shown"),
    [
        ("030 1234567", "+49301234568", "030 1234568"),
        ("+49 30 1234567", "+49301234568", "+49 30 1234568"),
        ("0049 30 1234567", "+49301234568", "0049 30 1234568"),
        # Berlin numbers differ in length: the national or international form instead
        ("030 1234567", "+4930123456", "030 123456"),
        ("+49 30 1234567", "+4930123456", "+49 30 123456"),
        ("(212) 555-0100", "+16465550199", "(646) 555-0199"),
    ],
)
def test_style_across_lengths_and_countries(template: str, number: str, shown: str) -> None:
    assert display_like(template, number) == shown


REGIONS = ["RU", "DE", "US", "GB", "FR", "IT", "CH", "JP", "BR", "AU", "NL", "ES"]
TYPES = [PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE]
STYLES = [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL]


@st.composite
def valid_numbers(draw: st.DrawFn, region: str | None = None) -> phonenumbers.PhoneNumber:
    """A number that can exist: a region's example number with its last digits redrawn."""
    region = region or draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(TYPES)))
    assert example is not None
    e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    number = phonenumbers.parse(e164[:-4] + tail)
    assume(phonenumbers.is_valid_number(number))
    return number


@given(st.data())
def test_a_shown_number_reads_back_as_itself(data: st.DataObject) -> None:
    """e164 → shown in the style of a site's number (same country or not) → the same e164."""
    number = data.draw(valid_numbers())
    region = phonenumbers.region_code_for_number(number)
    own = data.draw(st.one_of(valid_numbers(region), valid_numbers()))
    template = phonenumbers.format_number(own, data.draw(st.sampled_from(STYLES)))
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    shown = display_like(template, e164)
    assert to_e164(shown, region, bare_e164=False) == e164


@pytest.mark.parametrize(
    ("caller", "region", "kept"),
    [
        ("+79161234567", "RU", "+79161234567"),
        ("79161234567", "RU", "+79161234567"),  # E.164 without its '+', as carriers send it
        ("89161234567", "RU", "+79161234567"),  # nationally, with the trunk prefix
        ("2125550100", "US", "+12125550100"),  # as FreePBX's from-pstn-e164-us leaves it
        ("84951234567", "RU", "+74951234567"),  # Moscow; also +84 (Vietnam) as bare E.164
        ("2034176848", "US", "+12034176848"),  # also +20 (Egypt) as bare E.164
        ("9671234567", "RU", "+79671234567"),  # a mobile without its trunk prefix; also +967
        ("anonymous", "RU", "anonymous"),
        ("201", "RU", "201"),  # a phone of the PBX
        ("", None, ""),
    ],
)
def test_a_caller_is_kept_in_e164_when_a_number(caller: str, region: str | None, kept: str) -> None:
    assert caller_number(caller, region) == kept


def test_a_callers_earlier_forms_are_those_a_trunk_may_send() -> None:
    assert set(caller_forms("+79161234567", "RU")) >= {"+79161234567", "79161234567", "89161234567"}
    assert caller_forms("anonymous", "RU") == ["anonymous"]


def test_a_caller_search_finds_a_number_in_every_form_it_is_kept_in() -> None:
    for typed in ("89161234567", "+79161234567", "79161234567"):
        assert caller_search(typed, "RU") == "9161234567"
    assert caller_search("916123", "RU") == "916123"  # a part of a number: as typed
