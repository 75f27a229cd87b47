"""`GET /recordings/{call_id}?expires=&sig=`: a call's recording for whoever holds a signed link
(the CRM a webhook told about the call), without a staff login, until the link expires."""

from __future__ import annotations

from aiohttp import web

from integrations.recording_links import NOT_VALID, check, well_formed
from pbx.http import database_unavailable, json_error
from pbx.keys import CLOCK, LINK_KEYS
from pbx.staff_api import call_id_of, recording_file
from pbx.storage.link_keys import KeysUnavailable


async def signed_recording(request: web.Request) -> web.StreamResponse:
    call_id = call_id_of(request.match_info["call_id"])
    if call_id is None:
        return json_error(404, "no such call, or it has no recording")
    expires, sig = request.query.get("expires", ""), request.query.get("sig", "")
    if not well_formed(expires, sig):  # no key is read for what cannot be a link
        return json_error(403, NOT_VALID)
    keys, now = request.app[LINK_KEYS], request.app[CLOCK]()
    try:
        refused = check((await keys.ring()).opening(int(expires)), call_id, expires, sig, now)
        if refused == NOT_VALID:
            # signed by a daemon that read a rotated key before this one did: read them again
            ring = await keys.ring(reread=True)
            refused = check(ring.opening(int(expires)), call_id, expires, sig, now)
    except KeysUnavailable as unavailable:  # the database away since this daemon started
        return database_unavailable(request, str(unavailable))
    if refused is not None:
        return json_error(403, refused)
    return await recording_file(request, call_id)


def routes() -> list[web.AbstractRouteDef]:
    return [web.get(r"/recordings/{call_id:[0-9]{1,12}}", signed_recording)]
