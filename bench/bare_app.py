"""The yardstick for bench/lease_api.py: aiohttp answering JSON with JSON, and nothing else.

It serves the visitor API's two paths with one handler that parses the body and answers a body
shaped like calltrack's, so the same wrk script drives both servers and the ratio between them is
what calltrack's own work costs. Run like `calltrack serve`: one process, no access log.

Usage: python bench/bare_app.py PORT
"""

from __future__ import annotations

import secrets
import sys

from aiohttp import web


async def visit(request: web.Request) -> web.Response:
    """json parse + json response, with ids like calltrack's so the wrk script can follow them."""
    body = await request.json()
    session_id = request.match_info.get("session_id") or secrets.token_hex(16)
    return web.json_response(
        {
            "visitor_id": body.get("visitor_id") or secrets.token_hex(16),
            "session_id": session_id,
            "numbers": [
                {
                    "replace": "+7 (495) 123-45-67",
                    "number": "+74991000001",
                    "display": "+7 (499) 100-00-01",
                }
            ],
            "ping_interval_s": 30.0,
        }
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app() -> web.Application:
    app = web.Application()
    app.add_routes(
        [
            web.post("/api/v1/visits", visit),
            web.post("/api/v1/visits/{session_id}/ping", visit),
            web.get("/healthz", healthz),
        ]
    )
    return app


if __name__ == "__main__":
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None)
