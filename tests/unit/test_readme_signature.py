"""The README's signature check in Python (issue 14) works: its snippet, run as written,
accepts a delivery signed here with hmac directly and refuses a changed body or an old one."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "whsec-readme-0123456789"
BODY = b'{"event":"call.completed","event_id":"e1","call":{"id":1}}'


def readme_verify() -> Callable[..., bool]:
    section = README.read_text().split("### Webhooks", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet, "the Webhooks section has no Python snippet"
    scope: dict[str, object] = {}
    exec(snippet[1], scope)
    verify = scope["verify"]
    assert callable(verify)
    return verify


def header(body: bytes, t: int) -> str:
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def test_the_readme_snippet_verifies_a_signed_delivery() -> None:
    verify = readme_verify()
    now = int(time.time())
    assert verify(SECRET, BODY, header(BODY, now))
    assert not verify(SECRET, BODY + b" ", header(BODY, now))
    assert not verify("another-secret-0123", BODY, header(BODY, now))
    assert not verify(SECRET, BODY, header(BODY, now - 600))  # a replay
    assert not verify(SECRET, BODY, "garbage")


@pytest.mark.parametrize("junk", ["t=²,v1=ab", f"t={'9' * 400},v1=ab", "t={now},v1=ß"])
def test_the_readme_snippet_refuses_junk_without_an_error(junk: str) -> None:
    header = junk.format(now=int(time.time()))  # a current time: the signature is compared
    assert readme_verify()(SECRET, BODY, header) is False
