"""The app factory: one `build_app(settings, clock=...)`, every resource in a cleanup context."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from sqlalchemy import text

from integrations.worker import delivery_worker
from pbx import crm_api, journey_api, recording_links_api, reports_api, staff_api, staff_ui
from pbx.http import (
    Handler,
    database_unavailable,
    error_as_json,
    internal_error,
    refuse_unstorable,
    staff_body_limit,
)
from pbx.keys import (
    ANSWERS,
    CALLS,
    CLOCK,
    ENGINE,
    LINK_KEYS,
    LOGIN_GUARD,
    METRICS,
    OUTBOX,
    PBX_LINK,
    READER,
    RECORDINGS,
    SETTINGS,
    STAFF_SESSIONS,
    TEMPLATES,
    TOKEN_GUESSES,
    VISITS,
    PbxLink,
)
from pbx.metrics import Metrics
from pbx.pbx_link import pbx_link
from pbx.ratelimit import FailureLimit, LoginGuard
from pbx.sd_notify import supervised
from pbx.settings import Settings
from pbx.staff_api import TOKEN_GUESS_LIMIT, TOKEN_GUESS_WINDOW
from pbx.staff_ui import costs as staff_costs
from pbx.staff_ui import dashboard, deliveries, missed
from pbx.staff_ui import exports as staff_exports
from pbx.staff_ui import pools as staff_pools
from pbx.staff_ui import reports as staff_reports
from pbx.storage.calls import CallStore
from pbx.storage.db import is_sqlite, open_engine, require_current_schema
from pbx.storage.errors import is_outage, outage_reason
from pbx.storage.health import low_disk
from pbx.storage.inline_sqlite import open_inline_engine
from pbx.storage.link_keys import LinkKeys
from pbx.storage.login_failures import LoginFailures
from pbx.storage.outbox import Outbox
from pbx.storage.retention import run_visit_retention, run_write_progress_retention
from pbx.storage.speech import SpeechStore
from pbx.storage.staff_sessions import StaffSessionStore
from pbx.storage.visits import VisitStore
from pbx.tasks import cancel_and_wait
from recordings.speech_worker import SpeechWorker
from recordings.worker import RecordingWorker
from web_widget import api as visitor_api
from web_widget.answers import VisitorAnswers

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = open_engine(settings.database)
    separate_reader = is_sqlite(settings.database) and ":memory:" not in settings.database
    reader = open_engine(settings.database, read_only=True) if separate_reader else engine
    inline = open_inline_engine(str(engine.url.database)) if separate_reader else engine
    try:
        await require_current_schema(engine)
        not_kept = app[METRICS].page_views_not_kept
        visits = VisitStore(engine, settings, app[CLOCK], lambda why: not_kept.labels(why).inc())
        await visits.sync_numbers()
        app[ENGINE] = engine
        app[READER] = reader
        app[VISITS] = visits
        app[OUTBOX] = Outbox(settings, app[CLOCK])
        app[LINK_KEYS] = LinkKeys(
            engine, app[CLOCK], settings.webhooks.recording_link_ttl, reader=reader
        )
        app[LOGIN_GUARD].share(LoginFailures(engine))
        app[CALLS] = CallStore(engine, settings, visits, app[CLOCK], app[OUTBOX], inline)
        app[STAFF_SESSIONS] = StaffSessionStore(
            engine, app[CLOCK], settings.ui.session_idle, settings.ui.session_max
        )
        tasks = [
            asyncio.create_task(visits.run_flusher(), name="lease-flusher"),
            asyncio.create_task(
                run_visit_retention(engine, settings.visits.keep_days, app[CLOCK]),
                name="visit-retention",
            ),
            asyncio.create_task(
                run_write_progress_retention(engine, app[CLOCK]), name="write-progress-retention"
            ),
        ]
        yield
        await cancel_and_wait(*tasks)
        await visits.flush()
        visits.close()
    finally:
        await engine.dispose()
        if reader is not engine:
            await reader.dispose()
            await inline.dispose()


async def _recordings(app: web.Application) -> AsyncIterator[None]:
    """Convert new recordings for browsers and apply retention, beside the event loop."""
    link = app[PBX_LINK]  # a standby daemon leaves conversions to the one storing the calls
    worker = RecordingWorker(
        app[CALLS], app[SETTINGS], app[METRICS], app[CLOCK], active=lambda: not link.standby
    )
    app[RECORDINGS] = worker
    tasks = [
        asyncio.create_task(worker.run_conversions(), name="recording-conversions"),
        asyncio.create_task(worker.run_retention(), name="recording-retention"),
    ]
    yield
    await cancel_and_wait(*tasks)


async def freeze_startup_heap(_app: web.Application) -> None:
    """Take what startup built out of the garbage collector's full passes (`calltrack serve`
    only, as the last startup step: freezing is the process's, not one app's).

    Settings, templates, compiled statements, the engine, the models: startup leaves ~140,000
    objects that live as long as the process, and every full collection walked them all, ~64 ms
    with the event loop stopped, several times a minute under visitor traffic: the lease+ping
    mix's p99 went from 35-58 ms to 27-32 ms without it (bench/README.md). Frozen, a full pass
    walks only what was made since (sessions, visits), as the gc module's documentation
    suggests for long-lived processes.
    """
    gc.collect()
    gc.freeze()


async def _speech(app: web.Application) -> AsyncIterator[None]:
    """Keyword tags and transcripts of converted recordings, when speech is configured (phrases
    to spot, or an engine that gives transcripts)."""
    settings = app[SETTINGS]
    if not settings.speech.enabled:
        yield
        return
    store = SpeechStore(app[ENGINE], app[VISITS].transactions, app[OUTBOX], app[CLOCK])
    recordings = app[RECORDINGS]
    worker = SpeechWorker(
        store,
        settings,
        app[METRICS],
        app[CLOCK],
        last_call_stored=lambda: recordings.last_call_stored,
        active=lambda: not app[PBX_LINK].standby,
    )
    recordings.on_converted(worker.recording_converted)
    tasks = [
        asyncio.create_task(worker.run_analysis(), name="speech-analysis"),
        asyncio.create_task(worker.run_upkeep(), name="speech-upkeep"),
    ]
    yield
    await cancel_and_wait(*tasks)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers and takes writes; the PBX link's state is reported, not
    required. A full disk still answers reads: the writers' last failure and the free space
    beside a SQLite file tell it."""
    state: dict[str, object] = {"pbx": request.app[PBX_LINK].state()}
    engine = request.app[ENGINE]
    try:
        async with asyncio.timeout(2.0), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        problem = request.app[VISITS].health.problem() or low_disk(engine)
    except Exception as exc:  # any failure to answer is "down", with the reason shown
        problem = outage_reason(exc)
    state["database"] = problem or "ok"
    status = 503 if problem else 200
    state["status"] = "ok" if status == 200 else "degraded"
    return web.json_response(state, status=status)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def errors_and_navigation(handler: Handler) -> Handler:
    """`handler` with what a middleware would do, by path: a page's errors are pages and its
    navigation counts the missed calls; an API's errors are JSON; a bug is logged and
    answers 500 without a trace.

    Per route, not a middleware: aiohttp runs an application's middlewares for every route,
    and the visitor API's pings, nine in ten of its requests, paid for them: 515,000
    instructions a ping with the four middlewares this replaces, ~478,000 now (callgrind,
    bench/README.md "the hot path, again"). The visitor API's handlers answer their own errors
    (web_widget.api.OWN_ERRORS), so a ping goes through no layer at all. A route added to the
    app later must be wrapped too (tests/api/test_routes_wrapped.py checks build_app's);
    static files keep aiohttp's plain 404.
    """

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        api = request.path.startswith("/api/")
        try:
            if api:
                refuse_unstorable(request.query.values(), "the query")
                return await handler(request)
            try:
                refuse_unstorable(request.query.values(), "the query")
                await missed.count_for_navigation(request)
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                return await staff_ui.error_page(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400 or not api:
                raise
            return error_as_json(request, exc)
        except Exception as error:
            if request.writer.output_size:
                # a streamed answer (a CSV export) is under way: another response written now
                # would go inside its body, and the client would wait for the rest forever.
                # aiohttp logs the error and closes the connection: the download fails
                raise
            if is_outage(error):
                return database_unavailable(request, outage_reason(error))
            return internal_error(request)

    return answer


async def no_such_route(request: web.Request) -> web.StreamResponse:
    """The last route, for any method and path: the router's own 404 and 405 would leave
    without errors_and_navigation. 405 when some route has the path (with its Allow)."""
    allowed: set[str] = set()
    own = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not own:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _with_errors(routes: list[web.AbstractRouteDef]) -> list[web.AbstractRouteDef]:
    """The routes, each handler but the visitor API's wrapped in errors_and_navigation."""
    return [
        web.RouteDef(r.method, r.path, errors_and_navigation(r.handler), r.kwargs)
        if isinstance(r, web.RouteDef) and r.handler not in visitor_api.OWN_ERRORS
        else r
        for r in routes
    ]


def build_app(settings: Settings, clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(
        client_max_size=staff_body_limit(settings),  # forms; the visitor API reads its own
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[METRICS] = Metrics()
    # several daemons may share a PostgreSQL database: each stands by until it holds the AMI
    # consumer lock (pbx.ami_role), and its queues of recordings wait meanwhile
    app[PBX_LINK] = PbxLink(
        standby=settings.asterisk is not None and not is_sqlite(settings.database)
    )
    app[TEMPLATES] = staff_ui.templates(settings)
    app[LOGIN_GUARD] = LoginGuard(clock)
    app[TOKEN_GUESSES] = FailureLimit(clock, TOKEN_GUESS_LIMIT, TOKEN_GUESS_WINDOW)
    app[ANSWERS] = VisitorAnswers(settings)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_recordings)
    app.cleanup_ctx.append(_speech)  # after _recordings: conversions nudge it
    app.cleanup_ctx.append(delivery_worker)
    app.cleanup_ctx.append(pbx_link)
    app.cleanup_ctx.append(supervised)  # systemd; last, so its shutdown step runs first
    app.add_routes(
        _with_errors(
            [
                web.get("/healthz", healthz),
                web.get("/metrics", metrics),
                *visitor_api.routes(),
                *staff_api.routes(),
                *reports_api.routes(),
                *crm_api.routes(),
                *journey_api.routes(),
                *recording_links_api.routes(),
                *staff_ui.routes(),
                *staff_costs.routes(),
                *staff_exports.routes(),
                *missed.routes(),
                *dashboard.routes(),
                *staff_reports.routes(),
                *deliveries.routes(),
                *staff_pools.routes(),
                web.route("*", r"/{tail:[\s\S]*}", no_such_route),  # last; %0a included
            ]
        )
    )
    staff_pools.setup(app)
    return app
