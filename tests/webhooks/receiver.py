"""A local stand-in for a webhook's receiver: records what it got, answers as a test says."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

PATH = "/hook"


@dataclass(frozen=True)
class Got:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


@dataclass
class Receiver:
    """Answers 200, or the next of `answers`: an HTTP status, or "hang" (never answers)."""

    answers: list[int | str] = field(default_factory=list)
    got: list[Got] = field(default_factory=list)
    delay: float = 0.0  # seconds before each answer
    refusal: bytes = b"nope"  # the body of an answer other than 200
    refusal_headers: dict[str, str] = field(default_factory=dict)  # and its headers
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append(Got(dict(request.headers), body, time.time()))
        self.arrived.set()
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        if answer == 200:
            return web.Response(status=200, body=b"ok")
        return web.Response(status=int(answer), body=self.refusal, headers=self.refusal_headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PATH, self.handle)
        return app

    def by_event_id(self) -> Counter[str]:
        return Counter(g.headers["X-Calltrack-Event-Id"] for g in self.got)

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.got) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def serve(receiver: Receiver, port: int | None = None) -> TestServer:
    """`receiver` on 127.0.0.1 (a free port unless given); its URL is server.make_url(PATH)."""
    server = TestServer(receiver.app(), host="127.0.0.1", port=port)
    await server.start_server()
    return server
