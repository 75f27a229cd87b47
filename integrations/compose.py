"""What each target is sent: a stand-in until the content of issue 14's bodies is merged.

`composer_for(app)` is what the delivery worker asks for; this minimal composer sends the call
as the staff API shows it, signed with the webhook's secret, and skips GA4.
"""

from __future__ import annotations

import json

from aiohttp import web

from integrations.delivery import Composer, Outgoing, PendingEvent, Skip
from integrations.events import GA4_TARGET
from pbx.keys import CALLS, SETTINGS
from pbx.staff_api import call_json


class _CallComposer:
    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def compose(self, event: PendingEvent) -> Outgoing:
        settings = self._app[SETTINGS]
        hooks = {hook.name: hook for hook in settings.webhooks.targets}
        if event.target == GA4_TARGET or event.target not in hooks:
            raise Skip(f"no webhook named {event.target!r} in the config")
        call = await self._app[CALLS].get(event.call_id)
        if call is None:
            raise Skip(f"call {event.call_id} is gone")
        base = (settings.http.public_url or "").rstrip("/")
        body = {
            "event": str(event.event),
            "event_id": event.event_id,
            "call": call_json(call, base),
        }
        hook = hooks[event.target]
        return Outgoing(hook.url, json.dumps(body).encode(), secret=hook.signing_secret)


def composer_for(app: web.Application) -> Composer:
    return _CallComposer(app)
