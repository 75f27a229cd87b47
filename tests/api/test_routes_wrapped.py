"""Every route answers its errors as the app does (pbx.app.errors_and_navigation): there is no
middleware to catch what a route left unwrapped."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from pbx.app import build_app
from tests.helpers import settings_for
from web_widget.api import OWN_ERRORS


def test_every_route_is_wrapped_or_answers_its_own_errors(tmp_path: Path) -> None:
    app = build_app(settings_for(tmp_path))
    unwrapped = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if not isinstance(route.resource, web.StaticResource)
        and route.handler not in OWN_ERRORS
        and getattr(route.handler, "__wrapped__", None) is None
    ]
    assert unwrapped == []


def test_the_catch_all_route_is_the_last(tmp_path: Path) -> None:
    app = build_app(settings_for(tmp_path))
    last = list(app.router.resources())[-1]
    assert last.canonical == r"/{tail}"
