"""The webhook signature: `X-Calltrack-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

The time is signed with the body so a captured delivery cannot be replayed later than the
receiver's tolerance; SHA-256 rather than the SHA-1 the leader uses. Pure: the worker signs,
receivers (and the tests, and the README's snippet) verify.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Calltrack-Signature"
#: how far a signature's time may be from the receiver's clock, by default
TOLERANCE = 300.0


def _mac(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The header's value for `body` sent at unix time `t`."""
    return f"t={t},v1={_mac(secret, body, t)}"


MAX_T_DIGITS = 12  # a Unix time in seconds has 10 digits until the year 2286


def verify(secret: str, body: bytes, header: str, now: float, tolerance: float = TOLERANCE) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance` of `now`.

    Several v1 values are accepted (one per secret while a receiver rotates them); anything
    malformed is simply not a valid signature."""
    t: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        # ASCII digits only, and few: str.isdigit takes "²", which int() refuses, and
        # int() of hundreds of digits overflows the time arithmetic
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= MAX_T_DIGITS:
            t = int(value)
        elif key == "v1" and value.isascii():  # compare_digest refuses non-ASCII text
            signatures.append(value)
    if t is None or abs(now - t) > tolerance:
        return False
    expected = _mac(secret, body, t)
    return any(hmac.compare_digest(expected, s) for s in signatures)
