"""Recording links a CRM can play without a staff login: `/recordings/{call_id}?expires=&sig=`.

The link names the call and when it stops working, and carries an HMAC-SHA256 of both under the
server's link key (pbx/storage/link_keys.py, which can be rotated), so it cannot be moved to
another call or made to last longer. Nothing is stored per link: a link is valid because its
signature is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

SIGNATURE = re.compile(r"[0-9a-f]{64}")
EXPIRES = re.compile(r"[0-9]{1,12}")


def signature(key: bytes, call_id: int, expires: int) -> str:
    return hmac.new(key, f"recording:{call_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def recording_link(base_url: str, key: bytes, call_id: int, expires: int) -> str:
    sig = signature(key, call_id, expires)
    return f"{base_url}/recordings/{call_id}?expires={expires}&sig={sig}"


def check(keys: Sequence[bytes], call_id: int, expires: str, sig: str, now: float) -> str | None:
    """Why the link's query does not open call `call_id`'s recording now; None when it does.
    `keys`: those whose links still open (the current key, and the previous until revoked)."""
    if not EXPIRES.fullmatch(expires) or not SIGNATURE.fullmatch(sig):
        return "this link is not valid"
    if not any(hmac.compare_digest(sig, signature(k, call_id, int(expires))) for k in keys):
        return "this link is not valid"
    if now >= int(expires):
        return "this link has expired"
    return None
