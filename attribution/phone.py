"""Phone numbers as people write them, reduced to E.164 so that they compare equal."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\u00a0\u2009\u202f()\-./]")


class PhoneNumberError(ValueError):
    pass


def to_e164(text: str) -> str:
    """'+7 (495) 123-45-67', '8 495 1234567' and '0049 30 1234567' become '+74951234567' etc.

    A leading 8 followed by ten digits is the Russian trunk prefix (the seed market); every other
    number must carry its country code, with + or 00.
    """
    digits = _SEPARATORS.sub("", text.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    elif not digits.isdigit() or len(digits) < 8:
        raise PhoneNumberError(
            f"expected a phone number with its country code like +74951234567, got {text!r}"
        )
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise PhoneNumberError(
            f"expected a phone number with its country code like +74951234567, got {text!r}"
        )
    return "+" + digits


def digits_only(text: str) -> str:
    """What the dialplan matches on: the number without '+' (carriers send either)."""
    return to_e164(text)[1:]
