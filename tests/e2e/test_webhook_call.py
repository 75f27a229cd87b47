"""Issue 14 end to end: a visitor from google / cpc leases a number through the visitor API,
SIPp calls it through the lab Asterisk, and a local receiver gets the call.completed webhook
with that visit's attribution, a signature that verifies (checked here with hmac) and a
recording link that plays without a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e.conftest import Daemon, call, write_daemon_config

pytestmark = pytest.mark.asterisk

SECRET = "e2e-webhook-secret-0123456789"
CPC = "http://127.0.0.1:8080/landing?utm_source=google&utm_medium=cpc&utm_campaign=spring"


class Receiver:
    """The CRM: takes every POST, answers 200, keeps (headers, body) of each."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.json_response({"ok": True})

    def of_call(self, call_id: int) -> list[tuple[dict[str, str], bytes]]:
        """The deliveries about one call (the daemon also reports the lab's earlier calls it
        reconciles from Asterisk's CDR at start, each with its own webhook)."""
        return [(h, b) for h, b in self.got if json.loads(b)["call"]["id"] == call_id]

    async def wait_for(self, call_id: int, within: float) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + within
        while not self.of_call(call_id):
            assert time.monotonic() < deadline, f"no webhook for call {call_id} in {within}s"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.5)
        return self.of_call(call_id)[0]


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> tuple[Receiver, str]:
    crm = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/calltrack", crm.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return crm, str(server.make_url("/hooks/calltrack"))


@pytest.fixture
def daemon_config(tmp_path: Path, receiver: tuple[Receiver, str]) -> Path:
    """The lab config with the receiver as a json webhook (overrides tests/e2e's fixture)."""
    hook = {"name": "crm", "url": receiver[1], "secret": SECRET, "format": "json"}
    return write_daemon_config(tmp_path, webhooks=[hook])


def verified(headers: dict[str, str], body: bytes) -> bool:
    """X-Calltrack-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">, as the README says
    a receiver checks it."""
    parts = dict(p.split("=", 1) for p in headers["X-Calltrack-Signature"].split(","))
    signed = f"{parts['t']}.".encode() + body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


async def test_a_lab_call_ends_in_a_signed_webhook_with_its_attribution(
    daemon: Daemon, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    crm, _ = receiver
    visit = await daemon.visit(CPC)
    did = visit["numbers"][0]["number"]
    await call(did, tmp_path)
    stored = await daemon.wait_call(did)
    headers, body = await crm.wait_for(stored["id"], 10)
    assert verified(headers, body), headers
    event: dict[str, Any] = json.loads(body)
    assert event["event"] == "call.completed"
    assert headers["X-Calltrack-Event-Id"] == event["event_id"]
    assert event["call"]["id"] == stored["id"]
    assert event["call"]["session_id"] == visit["session_id"]
    attribution = event["attribution"]
    assert (attribution["method"], attribution["source"], attribution["medium"]) == (
        "session",
        "google",
        "cpc",
    )
    assert attribution["campaign"] == "spring" and attribution["landing_page"] == CPC
    assert event["journey"]["visits"] == 1
    async with aiohttp.ClientSession() as http, http.get(event["recording_url"]) as played:
        assert played.status == 200  # no login: the link is signed
        assert played.headers["Content-Type"].startswith("audio/")
    await asyncio.sleep(1)
    assert len(crm.of_call(stored["id"])) == 1, "delivered more than once"
