"""The webhook signature (issue 14): `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, checked
against a vector computed here with hmac directly, and verified with a tolerance."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from integrations.signing import sign, verify

SECRET = "whsec-0123456789abcdef"
BODY = b'{"event":"call.completed","call":{"id":7}}'
T = 1_800_000_000


def expected_header() -> str:
    mac = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    return f"t=1800000000,v1={mac}"


def test_the_header_is_hmac_sha256_of_time_dot_body() -> None:
    assert sign(SECRET, BODY, T) == expected_header()


def test_a_good_signature_verifies_within_the_tolerance() -> None:
    header = expected_header()
    assert verify(SECRET, BODY, header, now=T + 299)
    assert verify(SECRET, BODY, header, now=T - 299)
    assert not verify(SECRET, BODY, header, now=T + 301)  # a replay, too late
    assert verify(SECRET, BODY, header, now=T + 1000, tolerance=1000)


def test_a_changed_body_secret_or_time_does_not_verify() -> None:
    header = expected_header()
    assert not verify(SECRET, BODY + b" ", header, now=T)
    assert not verify("another-secret-0123", BODY, header, now=T)
    moved = header.replace("t=1800000000", "t=1800000001")
    assert not verify(SECRET, BODY, moved, now=T)


def test_a_rotated_secret_may_sign_beside_the_old_one() -> None:
    old = hmac.new(b"old-secret-0123456", b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert verify(SECRET, BODY, f"{expected_header()},v1={old}", now=T)
    assert verify(SECRET, BODY, f"t=1800000000,v1={old},{expected_header()[13:]}", now=T)


def test_malformed_headers_are_not_valid() -> None:
    for header in ("", "t=,v1=", "v1=abc", "t=abc,v1=abc", "t=1800000000", "garbage"):
        assert not verify(SECRET, BODY, header, now=T), header


@pytest.mark.parametrize("header", ["t=²,v1=ab", f"t={'9' * 400},v1=ab", "t=1800000000,v1=ß"])
def test_junk_headers_are_not_valid_signatures_not_errors(header: str) -> None:
    """ "t=²" passed isdigit and failed int(), hundreds of digits overflowed the time
    arithmetic, a non-ASCII v1 made compare_digest raise: a receiver's 500 on junk."""
    assert verify(SECRET, BODY, header, T) is False
