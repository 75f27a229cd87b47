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


NOT_VALID = "this link is not valid"
EXPIRED = "this link has expired"


def well_formed(expires: str, sig: str) -> bool:
    """Whether the query can be a link at all (checked before any key is read)."""
    return EXPIRES.fullmatch(expires) is not None and SIGNATURE.fullmatch(sig) is not None


def check(keys: Sequence[bytes], call_id: int, expires: str, sig: str, now: float) -> str | None:
    """Why the link's query does not open call `call_id`'s recording now; None when it does.
    `keys`: those a link of this expiry may be signed with (pbx.storage.link_keys.KeyRing)."""
    if not well_formed(expires, sig):
        return NOT_VALID
    if not any(hmac.compare_digest(sig, signature(k, call_id, int(expires))) for k in keys):
        return NOT_VALID
    if now >= int(expires):
        return EXPIRED
    return None
