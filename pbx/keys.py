"""Typed keys for what the app holds; opened and closed by pbx.app's cleanup contexts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ami_bridge import AmiBridge
from pbx.metrics import Metrics
from pbx.ratelimit import FailureLimit, LoginGuard
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.deliveries import Deliveries
from pbx.storage.link_keys import LinkKeys
from pbx.storage.outbox import Outbox
from pbx.storage.staff_sessions import StaffSessionStore
from pbx.storage.visits import VisitStore
from recordings.worker import RecordingWorker
from web_widget.answers import VisitorAnswers


@dataclass
class PbxLink:
    """The link to Asterisk, when the config has one; /healthz reports its state."""

    ami: AmiBridge | None = None
    agi: asyncio.Server | None = None
    #: another daemon on this database follows AMI (pbx.ami_role); this one serves FastAGI
    standby: bool = False

    def state(self) -> dict[str, str]:
        if self.standby:
            return {"ami": "standby", "agi": self._agi_state()}
        if self.ami is None:
            return {"ami": "not configured"}
        return {
            "ami": "connected" if self.ami.connected else "disconnected",
            "agi": self._agi_state(),
        }

    def _agi_state(self) -> str:
        return "listening" if self.agi is not None and self.agi.is_serving() else "down"


SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey[Callable[[], float]]("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
#: for long reads (reports): on SQLite its transactions take no write lock; else ENGINE itself
READER = web.AppKey("reader", AsyncEngine)
VISITS = web.AppKey("visits", VisitStore)
ANSWERS = web.AppKey("visitor_answers", VisitorAnswers)
#: events for webhooks and GA4, written with the calls and sales (integrations/ delivers them)
OUTBOX = web.AppKey("outbox", Outbox)
CALLS = web.AppKey("calls", CallStore)
#: the outbox as the delivery worker and the admin page see it (integrations.worker sets it)
DELIVERIES = web.AppKey("deliveries", Deliveries)
#: the key that signs recording links in webhooks (made on first use, kept in the database)
LINK_KEYS = web.AppKey("link_keys", LinkKeys)
METRICS = web.AppKey("metrics", Metrics)
PBX_LINK = web.AppKey("pbx_link", PbxLink)
STAFF_SESSIONS = web.AppKey("staff_sessions", StaffSessionStore)
LOGIN_GUARD = web.AppKey("login_guard", LoginGuard)
#: wrong bearer tokens per client network (pbx.staff_api.api_caller)
TOKEN_GUESSES = web.AppKey("token_guesses", FailureLimit)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
RECORDINGS = web.AppKey("recordings", RecordingWorker)
#: callers waiting for a call-back, counted once per page for the navigation (staff_ui.missed)
MISSED_COUNT = web.RequestKey("missed_count", int)
