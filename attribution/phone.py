"""Phone numbers as people and carriers write them, reduced to E.164 so that they compare equal.

Which numbers can exist, how long they are and how each country writes them nationally is the
numbering-plan metadata of `phonenumbers` (the Python port of Google's libphonenumber), kept up
to date for every country; a hand-written parser knew one country and let impossible numbers in.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    CountryCodeSource,
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    ValidationResult,
)

#: ISO 3166 two-letter codes of the regions whose numbering plans are known.
REGIONS: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)

_WHY_NOT_POSSIBLE = {
    ValidationResult.TOO_SHORT: "too few digits",
    ValidationResult.TOO_LONG: "too many digits",
    ValidationResult.INVALID_LENGTH: "a number of digits no number there has",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number: add its area code",
    ValidationResult.INVALID_COUNTRY_CODE: "no country has this code",
}
_WHY_NOT_PARSED = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country has this code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too few digits",
    NumberParseException.TOO_SHORT_NSN: "too few digits",
    NumberParseException.TOO_LONG: "too many digits",
}


class PhoneNumberError(ValueError):
    """Text that is not a number that can exist; the message says why, for a person to fix."""


def parse(text: str, region: str | None = None, *, bare_e164: bool = True) -> PhoneNumber:
    """The number `text` stands for, if it can exist.

    '+7 …' and '00 7 …' carry their country code. Other text is read as written in `region`
    (ISO 3166 code such as RU, DE, US: '8 495 123-45-67', '030 1234567', '(212) 555-0100'),
    and failing that, when it is bare digits and `bare_e164`, as E.164 without its '+' (as
    carriers send it; a person may mean a trunk prefix: '84951234567' is also a number in
    Vietnam). Extensions are refused: a tracked or dialled number has none.
    """
    written = text.strip()
    if written.startswith("00"):  # the international prefix of most of the world
        written = "+" + written[2:]
    readings: list[tuple[str, str | None]] = []
    if written.startswith("+"):
        readings.append((written, None))
    else:
        if region:
            readings.append((written, region))
        if bare_e164 and written.isdigit():
            readings.append(("+" + written, None))
    if not any(c.isdigit() for c in written):
        raise PhoneNumberError(f"{text!r} is not a phone number")
    if not readings:  # no region given
        raise PhoneNumberError(
            f"{text!r} has no country code: expected a number like +74951234567"
            " (or a region to read national numbers in)"
        )
    problems = []
    for candidate, in_region in readings:
        try:
            number = phonenumbers.parse(candidate, in_region, keep_raw_input=True)
        except NumberParseException as exc:
            problems.append(_WHY_NOT_PARSED.get(exc.error_type, "not a phone number"))
            continue
        if number.extension:
            problems.append("an extension, not a number that can be dialled directly")
        elif phonenumbers.is_valid_number(number):
            return number
        else:
            problems.append(_why_invalid(number))
    raise PhoneNumberError(f"{text!r} is not a phone number that can exist: {problems[0]}")


def _why_invalid(number: PhoneNumber) -> str:
    reason = phonenumbers.is_possible_number_with_reason(number)
    code = number.country_code or 0  # always set once parsed
    why = _WHY_NOT_POSSIBLE.get(reason, "not in that country's numbering plan")
    return f"{why} (+{code}, {phonenumbers.region_code_for_country_code(code)})"


def to_e164(text: str, region: str | None = None, *, bare_e164: bool = True) -> str:
    """'+7 (495) 123-45-67', '0049 30 1234567', and with region RU '8 495 1234567', in E.164."""
    return phonenumbers.format_number(
        parse(text, region, bare_e164=bare_e164), PhoneNumberFormat.E164
    )


def caller_number(caller: str, region: str | None) -> str:
    """A caller ID as calls keep it: in E.164 when it is a number that can exist, else as it
    came ('anonymous', a phone's extension). One person's number comes as +7916..., 7916... or
    8916... by trunk, and as the dialplan rewrote it in the CDR (FreePBX's from-pstn-e164-us
    makes +12125550100 2125550100): kept as it came, their calls were different callers.
    Bare digits are read as the install's region writes numbers first, as dialled numbers are:
    a trunk's national forms (RU 84951234567, US 2034176848) are its callers' usual ones, and
    many also spell a foreign number as E.164 without its '+' (+84 Vietnam, +20 Egypt). The
    rarer foreign caller sent as bare E.164 whose digits are also a national number is read
    nationally; the CDR keeps what the trunk sent."""
    try:
        return to_e164(caller, region)
    except PhoneNumberError:
        return caller


def caller_search(text: str, region: str | None) -> str:
    """What a search for a caller looks for in the callers kept: a whole number's national
    significant digits, in every form a caller is kept in (9161234567 is in +79161234567 and
    in 89161234567, kept as the trunk sent it before 2026-12-03); other text (a part of a
    number) as it is."""
    try:
        return phonenumbers.national_significant_number(parse(text, region))
    except PhoneNumberError:
        return text


def caller_forms(caller: str, region: str | None) -> list[str]:
    """The forms `caller` (as caller_number keeps it) may have in calls stored before callers
    were kept in E.164: as the trunk or the CDR sent it."""
    if not caller.startswith("+"):
        return [caller]
    try:
        return dialled_forms(caller, region)
    except PhoneNumberError:
        return [caller]


def dialled_forms(e164: str, region: str | None) -> list[str]:
    """Every way a carrier may send `e164` as the dialled number: with '+', without it, with the
    international prefix most of the world dials ('00'), and, for a number of `region`,
    nationally (with and without the trunk prefix: RU '84991234567' and '4991234567', DE
    '0301234567' and '301234567'). A form no extension has is a call the PBX refuses."""
    number = parse(e164)
    bare = phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]
    forms = [bare, "+" + bare, "00" + bare]
    if region and phonenumbers.region_code_for_number(number) == region:
        national = "".join(
            c for c in phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL) if c.isdigit()
        )
        forms += [national, phonenumbers.national_significant_number(number)]
    return list(dict.fromkeys(forms))


def _country_code(digits: str) -> int:
    """The country calling code an E.164 number (without '+') starts with; 0 if none. Country
    codes are prefix-free, so the first of 1, 2 or 3 leading digits that is one is it."""
    for length in (1, 2, 3):
        if int(digits[:length] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(digits[:length])
    return 0


@dataclass(frozen=True)
class _Style:
    """What a site's own number as written says about writing another number like it, read
    once per template and country: a lease only substitutes digits into it."""

    own: PhoneNumber | None  # the template read in the country (None: not a number there)
    international: str  # its E.164 digits, without '+'
    #: the new number's digits that replace the template's, counted from the right; None when
    #: the template is written as E.164 digits (all of the new number's replace it)
    kept_digits: int | None


@functools.lru_cache(maxsize=1024)
def _style(template: str, country: int) -> _Style:
    """Kept: the same few templates serve every lease, and parsing and formatting them was most
    of what writing a tracking number cost."""
    try:
        own = parse(template, phonenumbers.region_code_for_country_code(country))
    except PhoneNumberError:
        return _Style(None, "", None)
    international = phonenumbers.format_number(own, PhoneNumberFormat.E164)[1:]
    written = "".join(c for c in template if c.isdigit())
    shared = 0  # digits shared with the E.164 form, counted from the right
    while (
        shared < min(len(written), len(international))
        and written[-1 - shared] == international[-1 - shared]
    ):
        shared += 1
    return _Style(own, international, None if written == international else shared)


def display_like(template: str, e164: str) -> str:
    """The tracking number `e164` written in the style of the site's own number `template`.

    The template's digits are replaced from the right by the new number's, so its spacing and a
    trunk prefix written instead of the country code (Russia's 8, Germany's 0) are kept; a
    template without a country code is read in the tracking number's country. A number that
    cannot wear the template's style (another country or length) is formatted by the numbering
    plan instead: nationally if the template is national and of the same country, else
    internationally, never as bare E.164.
    """
    new = e164.removeprefix("+")
    country = _country_code(new)
    style = _style(template, country)
    own = style.own
    if own is None or own.country_code != country or len(new) != len(style.international):
        number = parse(e164)  # the rare case: formatted by the numbering plan
        national = (
            own is not None
            and own.country_code == number.country_code
            and own.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY
        )
        form = PhoneNumberFormat.NATIONAL if national else PhoneNumberFormat.INTERNATIONAL
        return phonenumbers.format_number(number, form)
    kept = style.kept_digits
    replacement = list(new if kept is None else new[len(new) - kept :])
    out: list[str] = []
    for char in reversed(template):
        out.append(replacement.pop() if char.isdigit() and replacement else char)
    return "".join(reversed(out))
