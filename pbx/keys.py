"""Typed keys for what the app holds; opened and closed by pbx.app's cleanup contexts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.visits import VisitStore


@dataclass
class PbxLink:
    """The state of the link to Asterisk, for /healthz (None: not configured)."""

    ami_connected: bool | None = None
    agi_listening: bool | None = None


SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey[Callable[[], float]]("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
VISITS = web.AppKey("visits", VisitStore)
CALLS = web.AppKey("calls", CallStore)
METRICS = web.AppKey("metrics", Metrics)
PBX_LINK = web.AppKey("pbx_link", PbxLink)
