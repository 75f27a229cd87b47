"""Money as whole cents: one currency per install, no floats, one reading of what people type.

Amounts come from the config (`static[].monthly_cost`), cost files, the CRM (`POST
/api/v1/sales`) and the staff pages; all of them are read here, so "1500", "1500.5" and
"1 500,50" mean the same everywhere.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MAX_CENTS = 10**13  # a hundred billion in currency units: more is a typo, not a sale
_SPACES = re.compile(r"[\s\u00a0\u202f']")
_EXPECTED = 'expected an amount like 1500 or "1500.00"'


class MoneyError(ValueError):
    """What was wrong with an amount, for the person who typed it."""


def to_cents(value: object, *, allow_negative: bool = False) -> int:
    """Whole cents of an amount in currency units: 1500, "1500.00", "1 500,5" (a decimal comma
    when there is no point), at most two decimals. Booleans, floats with more precision, NaN and
    amounts over MAX_CENTS are refused with a reason."""
    if isinstance(value, bool) or value is None:
        raise MoneyError(_EXPECTED)
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        amount = _decimal(_SPACES.sub("", value.strip()), value)
    else:
        raise MoneyError(f"{_EXPECTED}, got {value!r}")
    if not amount.is_finite():
        raise MoneyError(f"expected a finite amount, got {value!r}")
    if amount.adjusted() > len(str(MAX_CENTS)):  # "1e999999": too large to multiply at all
        raise MoneyError(f"amount too large: {value!r}")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise MoneyError(f"at most two decimals (whole cents), got {value!r}")
    if cents < 0 and not allow_negative:
        raise MoneyError(f"expected an amount of zero or more, got {value!r}")
    if abs(cents) > MAX_CENTS:
        raise MoneyError(f"amount too large: {value!r}")
    return int(cents)


_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+$")
#: the same with a dot, as German or Russian Excel groups thousands ("1.500" is 1500 there)
_DOT_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(\.\d{3})+$")


def _decimal(text: str, typed: str) -> Decimal:
    """A decimal written either way: with both separators the last one is the decimal mark
    ("1,234.56", "1.234,56"); a lone comma is a decimal comma ("1500,5"), except where it can
    be read both ways ("1,500": 1500 or 1.5? "1.500", as a German file groups thousands, too),
    which is refused rather than guessed."""
    if "," in text and "." in text:
        mark = "." if text.rindex(".") > text.rindex(",") else ","
        text = text.replace("." if mark == "," else ",", "").replace(",", ".")
    elif "," in text:
        if _THOUSANDS.match(text):
            raise MoneyError(f"{typed!r} may be read two ways: write 1500.00 or 1,50")
        text = text.replace(",", ".")
    elif _DOT_THOUSANDS.match(text):
        raise MoneyError(f"{typed!r} may be read two ways: write 1500.00 or 1.50")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"{_EXPECTED}, got {typed!r}") from None


def cents_text(cents: int) -> str:
    """ "1500.00": exact, for JSON and CSV (a float would not be)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def divide_cents(cents: int, count: int) -> int | None:
    """cents / count rounded half to even to a whole cent; None when count is 0."""
    if count == 0:
        return None
    return int((Decimal(cents) / count).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
