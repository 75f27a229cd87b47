"""What each delivery says: the `Composer` the worker asks for a claimed event's request.

The target decides the shape: a webhook's `format` (json: webhook_json, bitrix24: bitrix24) or
GA4 (ga4). This module only reads what the shapes need (the call, its journey, its sale, the
visit's GA client id) and makes the signed recording link; the shapes are built without I/O in
their own modules, each tested on a hand-built call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations.bitrix24 import lead_lookup, lead_request, lead_url
from integrations.delivery import Composer, Destination, Lookup, Outgoing, PendingEvent, Skip
from integrations.events import GA4_TARGET, Format
from integrations.ga4 import GA4_TIMEOUT, collect_url, event_request
from integrations.recording_links import recording_link
from integrations.webhook_json import sale_json, webhook_body
from pbx.keys import CALLS, CLOCK, ENGINE, LINK_KEYS, SETTINGS
from pbx.settings import Settings, Webhook
from pbx.staff_api import call_json
from pbx.storage.calls import CallStore
from pbx.storage.event_facts import ga_client_id, sale_row
from pbx.storage.journey import load_journey
from pbx.storage.link_keys import LinkKeys


def base_url(settings: Settings) -> str:
    """Where the receiver reaches this daemon: `http.public_url`, else its listening address
    (there is no request to take a host from)."""
    public = settings.http.public_url
    return public.rstrip("/") if public else f"http://{settings.http.host}:{settings.http.port}"


def configured_targets(settings: Settings) -> frozenset[str]:
    """The names deliveries go to: each webhook's, and GA4's when it is configured."""
    names = {t.name for t in settings.webhooks.targets}
    return frozenset(names | ({GA4_TARGET} if settings.ga4 is not None else set()))


class EventComposer:
    def __init__(
        self,
        settings: Settings,
        calls: CallStore,
        engine: AsyncEngine,
        link_keys: LinkKeys,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._calls = calls
        self._engine = engine
        self._link_keys = link_keys
        self._clock = clock
        self._base = base_url(settings)

    async def compose(self, event: PendingEvent) -> Outgoing:
        call = await self._calls.get(event.call_id)
        if call is None:
            raise Skip(f"call {event.call_id} is no longer stored")
        if event.target == GA4_TARGET:
            if self._settings.ga4 is None:
                raise Skip("ga4 is no longer configured")
            client_id = await ga_client_id(self._engine, call["session_id"])
            return event_request(
                self._settings.ga4, call, client_id, self._settings.currency, self._clock()
            )
        hook = self._hook(event.target)
        if hook is None:
            raise Skip(f"no webhook named {event.target!r} in the config now")
        link = await self._recording_link(call)
        if hook.format is Format.BITRIX24:
            return lead_request(hook.url, hook.signing_secret, event, call, link)
        sale = await self._sale(event.sale_reference)
        body = webhook_body(
            event,
            call_json(call, self._base),
            link,
            await load_journey(self._engine, call["id"], self._settings.region),
            sale,
        )
        return Outgoing(
            hook.url, body, {"Content-Type": "application/json"}, secret=hook.signing_secret
        )

    def destination(self, target: str) -> Destination | None:
        if target == GA4_TARGET:
            ga4 = self._settings.ga4
            return None if ga4 is None else Destination(collect_url(ga4), None, GA4_TIMEOUT)
        hook = self._hook(target)
        if hook is None:
            return None
        url = lead_url(hook.url) if hook.format is Format.BITRIX24 else hook.url
        return Destination(url, hook.signing_secret, hook.timeout)

    def lookup(self, event: PendingEvent) -> Lookup | None:
        hook = self._hook(event.target)
        if hook is None or hook.format is not Format.BITRIX24:
            return None  # a webhook's receiver drops a duplicate by its event id; GA4 has no lookup
        return lead_lookup(hook.url, event.event_id)

    def targets(self) -> frozenset[str]:
        return configured_targets(self._settings)

    def _hook(self, target: str) -> Webhook | None:
        return next((t for t in self._settings.webhooks.targets if t.name == target), None)

    async def _recording_link(self, call: dict[str, Any]) -> str | None:
        """A link that plays the recording for webhooks.recording_link_ttl from now."""
        if not call["recording"]:
            return None
        expires = int(self._clock() + self._settings.webhooks.recording_link_ttl)
        key = await self._link_keys.key()
        return recording_link(self._base, key, call["id"], expires)

    async def _sale(self, reference: str | None) -> dict[str, Any] | None:
        if reference is None:
            return None
        row = await sale_row(self._engine, reference)
        return sale_json(row, self._settings.currency) if row else None


def composer_for(app: web.Application) -> Composer:
    return EventComposer(app[SETTINGS], app[CALLS], app[ENGINE], app[LINK_KEYS], app[CLOCK])
