"""The ad platforms' upload files, as `calltrack export` writes them and /admin/exports serves
them: the calls of a range of local days, read once, in each platform's format."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from integrations import google_ads, metrica
from integrations.conversions import ConversionCall, Export, day_span
from integrations.metrica import UPLOAD_WINDOW
from pbx.settings import Settings
from pbx.storage.conversions import conversion_calls

#: the days an export covers by default (page and command): what Metrica still links to visits
DEFAULT_DAYS = round(UPLOAD_WINDOW / 86400)

GOOGLE_ADS, METRICA, METRICA_YCLID = "google-ads", "metrica", "metrica-yclid"
KINDS = (GOOGLE_ADS, METRICA, METRICA_YCLID)
NOT_CONFIGURED = (
    "google_ads is not configured: add google_ads: {conversion_name: ...} to the config"
)


class NotConfigured(Exception):
    """The export needs a config section that is missing; the text says which."""


async def read_calls(
    engine: AsyncEngine, settings: Settings, since: date, until: date
) -> list[ConversionCall]:
    """The calls from `since` to `until`, local days in ui.timezone, both included. Raises
    storage.conversions.TooManyCalls."""
    start, end = day_span(since, until, ZoneInfo(settings.ui.timezone))
    return await conversion_calls(engine, settings, start, end)


def build(kind: str, calls: Sequence[ConversionCall], settings: Settings, now: float) -> Export:
    """The `kind` upload file of `calls`; raises NotConfigured."""
    if kind in (METRICA, METRICA_YCLID):
        return metrica.export(
            calls,
            now=now,
            currency=settings.currency,
            public_url=settings.http.public_url,
            by=metrica.YCLID if kind == METRICA_YCLID else metrica.CLIENT_ID,
        )
    ads = settings.google_ads
    if ads is None:
        raise NotConfigured(NOT_CONFIGURED)
    return google_ads.export(
        calls,
        conversion_name=ads.conversion_name,
        counted=ads.calls,
        default_value_cents=ads.value,
        currency=settings.currency,
        timezone=settings.ui.timezone,
    )


def file_name(kind: str, since: date, until: date) -> str:
    return f"{kind}-calls-{since}-{until}.csv"
