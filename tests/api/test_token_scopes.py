"""API tokens with scopes: a token reaches only the endpoints its `scopes` name (403 naming the
scope it lacks), a token without `scopes` reaches all of them, as every token did before; every
/api/v1 route has its scope here, so a new one cannot come without that decision."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pbx.app import build_app
from pbx.settings import ConfigError, Scope, parse_settings
from tests.api.test_staff_ui import log_in, store_call
from tests.helpers import STAFF_TOKEN, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
NOW = 1_800_000_000.0

#: every /api/v1 route (method, path with call 1) and the one scope it needs
ROUTES: dict[tuple[str, str], Scope] = {
    ("GET", "/api/v1/calls"): Scope.CALLS_READ,
    ("GET", "/api/v1/calls/{call_id}/journey"): Scope.CALLS_READ,
    ("PATCH", "/api/v1/calls/{call_id}"): Scope.CALLS_WRITE,
    ("GET", "/api/v1/calls/{call_id}/recording"): Scope.RECORDINGS_READ,
    ("GET", "/api/v1/leases"): Scope.LEASES_READ,
    ("GET", "/api/v1/reports"): Scope.REPORTS_READ,
    ("POST", "/api/v1/sales"): Scope.SALES_WRITE,
}
BODIES: dict[str, Any] = {
    "PATCH": {"score": 4},
    "POST": {"reference": "deal-1", "caller": "+79161234567", "amount": "10.00"},
}
CRM = "crm-token-0123456789"  # sales and reviews, nothing to read
ANALYST = "analyst-token-0123456789"  # reports only


def token(name: str, secret: str, scopes: list[str] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "token_sha256": hashlib.sha256(secret.encode()).hexdigest(),
    }
    if scopes is not None:
        entry["scopes"] = scopes
    return entry


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    settings = settings_for(
        tmp_path,
        users=staff_users(),
        api_tokens=[
            token("staff", STAFF_TOKEN, None),
            token("crm", CRM, ["sales:write", "calls:write"]),
            token("analyst", ANALYST, ["reports:read"]),
        ],
    )
    await migrate(settings)
    app = await aiohttp_client(build_app(settings, clock=FakeClock(NOW)))
    assert await store_call(app, "S1", at=NOW - 3600) == 1
    return app


async def ask(client: Client, method: str, path: str, secret: str) -> tuple[int, Any]:
    response = await client.request(
        method,
        path.format(call_id=1),
        json=BODIES.get(method),
        headers={"Authorization": f"Bearer {secret}"},
    )
    body = await response.json() if response.content_type == "application/json" else None
    return response.status, body


def test_every_api_route_has_its_scope_here(tmp_path: Path) -> None:
    app = build_app(settings_for(tmp_path))
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and not route.resource.canonical.startswith("/api/v1/visits")  # the widget's, public
        and route.method != "HEAD"
    }
    assert routes == set(ROUTES)
    assert set(ROUTES.values()) == set(Scope)  # and every scope opens something


@pytest.mark.parametrize(("method", "path"), list(ROUTES))
async def test_a_token_reaches_what_its_scopes_name_and_nothing_else(
    client: Client, method: str, path: str
) -> None:
    needs = ROUTES[(method, path)]
    for secret, scopes in (
        (CRM, {Scope.SALES_WRITE, Scope.CALLS_WRITE}),
        (ANALYST, {Scope.REPORTS_READ}),
        (STAFF_TOKEN, set(Scope)),  # no `scopes`: every one
    ):
        status, body = await ask(client, method, path, secret)
        if needs in scopes:  # let in (call 1 has no recording: 404; deal-1 is the CRM's: 409)
            assert (
                status < 300
                or (status == 404 and "recording" in path)
                or (status == 409 and body["reason"] == "another_token")
            ), (secret, path, body)
        else:
            assert status == 403, (secret, method, path, status, body)
            assert body == {"error": f"this token may not do this: it needs the {needs} scope"}
    status, _ = await ask(client, method, path, "not-a-token")
    assert status == 401


async def test_a_logged_in_staff_member_still_plays_recordings(client: Client) -> None:
    """The recording endpoint is also the staff pages' player: their session needs no token
    (call 1 has no recording: 404 once let in, where a visitor without a login gets 401)."""
    assert (await client.get("/api/v1/calls/1/recording")).status == 401
    await log_in(client, "sam")
    assert (await client.get("/api/v1/calls/1/recording")).status == 404


def test_an_unknown_or_empty_scope_list_is_a_config_error() -> None:
    base = (
        "forward_to: PJSIP/x\nsites: []\napi_tokens:\n  - name: crm\n"
        f"    token_sha256: {'a' * 64}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_settings(base + "    scopes: [sales:write, calls:delete]\n", "calltrack.yaml")
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("calltrack.yaml:6:")
    assert "calls:delete" in problem or "sales:write" in problem
    with pytest.raises(ConfigError) as caught:
        parse_settings(base + "    scopes: []\n", "calltrack.yaml")
    assert str(caught.value.problems[0]).startswith("calltrack.yaml:6:")
    # its only item commented out: null, which must not mean "every scope"
    with pytest.raises(ConfigError) as caught:
        parse_settings(base + "    scopes:\n    # - reports:read\n", "calltrack.yaml")
    assert "expected at least one scope" in str(caught.value.problems[0])
    good = parse_settings(base + "    scopes: [sales:write]\n", "calltrack.yaml")
    assert good.api_tokens[0].scopes == [Scope.SALES_WRITE]


async def test_a_token_that_may_not_read_calls_gets_no_call_back_from_its_writes(
    client: Client,
) -> None:
    """The sale's and the PATCH's answers carried the whole call (caller, pages, click ids,
    recording link): a sales:write token read calls it may not list."""
    status, sold = await ask(client, "POST", "/api/v1/sales", CRM)
    assert status == 201 and sold["call_id"] == 1 and sold["call"] is None
    status, patched = await ask(client, "PATCH", "/api/v1/calls/{call_id}", CRM)
    assert status == 200 and patched["score"] == 4 and patched["id"] == 1
    assert "caller" not in patched and "landing_url" not in patched
    status, again = await ask(client, "PATCH", "/api/v1/calls/{call_id}", STAFF_TOKEN)
    assert status == 200 and again["caller"]  # with calls:read: the call as before


async def test_a_reference_another_token_posted_is_a_409_and_changes_nothing(
    client: Client,
) -> None:
    """Two systems that both number deals 1, 2, 3: the second one's post was taken for a
    correction of the first one's sale and moved its credit."""
    body = {"reference": "1001", "caller": "+79161234567", "amount": "1000"}
    first = await client.post(
        "/api/v1/sales", json=body, headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
    )
    assert first.status == 201
    other = await client.post(
        "/api/v1/sales",
        json={**body, "amount": "5"},
        headers={"Authorization": f"Bearer {CRM}"},
    )
    assert other.status == 409 and (await other.json())["reason"] == "another_token"
    again = await client.post(
        "/api/v1/sales", json=body, headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
    )
    assert again.status == 200 and (await again.json())["amount"] == "1000.00"  # unchanged


def test_a_token_name_longer_than_its_column_is_a_config_error() -> None:
    """The name is stored as who posted a sale (String(64)): on PostgreSQL a longer one made
    every sale and PATCH of that token a 500; SQLite kept it, so it showed only after a move."""
    config = f"forward_to: PJSIP/x\nsites: []\napi_tokens:\n  - name: {'c' * 65}\n"
    with pytest.raises(ConfigError) as caught:
        parse_settings(config + f"    token_sha256: {'a' * 64}\n", "calltrack.yaml")
    assert str(caught.value.problems[0]).startswith("calltrack.yaml:4:")
