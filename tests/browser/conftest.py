"""Fixtures for the web widget in real headless Chromium against the real daemon.

- `daemon_factory` starts `calltrack serve` as a subprocess (a config and SQLite file in a tmp
  dir, free ports), one daemon per (freeze_time, ping_interval), for the whole session.
- `demo` serves web_widget/demo/ from another port, so the widget's CORS requests are real.
- `stub` is a fake tracker that serves the real widget.js and answers the API as a test says
  (badly on purpose, or with a chosen session id); it records what the widget sent.
- `browser` is Debian's Chromium (never a downloaded one). Without it the tests skip, or fail
  when CALLTRACK_REQUIRE_BROWSER=1 (as CI sets it).

The Playwright sync API runs its own event loop; it is opened per module so that it is closed
again before any asyncio test elsewhere in the suite runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bench.lease_api import free_port

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "web_widget" / "demo"
WIDGET = REPO / "web_widget" / "static" / "widget.js"
CHROMIUM = os.environ.get("CALLTRACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-tests-staff-token"
OWN = "+74951234567"
PAID = [f"+749900001{i:02d}" for i in range(20)]  # a pool no test run exhausts
ORGANIC = ["+74990000011", "+74990000012"]
SERVICE = "+74955550011"  # site "lines": a second own number, the service desk's
LINES_SALES = [f"+749900002{i:02d}" for i in range(30, 50)]
LINES_SERVICE = [f"+749900003{i:02d}" for i in range(20)]
PRIVATE = [
    "+74990000021",
    "+74990000022",
    "+74990000023",
]  # site "private": respect_privacy_signals


def _require_browser() -> bool:
    return os.environ.get("CALLTRACK_REQUIRE_BROWSER", "") not in ("", "0")


def _no_browser(reason: str) -> NoReturn:
    if _require_browser():
        pytest.fail(f"{reason} (CALLTRACK_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Server:
    url: str
    httpd: ThreadingHTTPServer

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _serve(handler: Callable[..., Any]) -> Server:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd)


@pytest.fixture(scope="session")
def demo() -> Iterator[Server]:
    """web_widget/demo/ over HTTP; its origin is the site's origin in the daemon's config."""
    server = _serve(partial(_QuietHandler, directory=str(DEMO_DIR)))
    yield server
    server.close()


@dataclass
class Daemon:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def leases(self) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            self.url + "/api/v1/leases", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            leases: list[dict[str, Any]] = json.load(response)["leases"]
        return leases

    def held(self) -> dict[str, dict[str, Any]]:
        """Leases held now, by session id."""
        now = datetime.now(UTC)
        return {
            lease["session_id"]: lease
            for lease in self.leases()
            if lease.get("held", True) and datetime.fromisoformat(lease["held_until"]) > now
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _calltrack() -> list[str]:
    """The console script of this checkout (pip install -e .), else `python -m pbx.cli`."""
    script = Path(sys.executable).parent / "calltrack"
    if script.exists():
        return [str(script)]
    found = shutil.which("calltrack")
    return [found] if found else [sys.executable, "-m", "pbx.cli"]


@contextlib.contextmanager
def serving(config: Path, port: int) -> Iterator[str]:
    """`calltrack serve -c config` (migrated) in the config's folder until the block ends; its
    URL once /healthz answers (its log beside the config)."""
    folder = config.parent
    log = folder / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_calltrack(), "serve", "-c", str(config)], cwd=folder, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def start_daemon(workdir: Path, origin: str, freeze_time: str, ping_interval: float) -> Daemon:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "freeze_time": freeze_time,
        "forward_to": "PJSIP/realline",
        "sites": [
            {
                "name": "main",
                "origins": [origin],
                "replace": ["+7 495 123-45-67"],
                "pools": [
                    {"name": "paid", "when": {"utm_medium": ["cpc", "ppc"]}, "numbers": PAID},
                    {"name": "organic", "numbers": ORGANIC},
                ],
                "fallback": OWN,
            },
            {
                "name": "lines",
                "origins": [origin],
                "replace": ["+7 495 123-45-67", "+7 (495) 555-00-11"],
                "pools": [
                    {"name": "sales", "replaces": [OWN], "numbers": LINES_SALES},
                    {
                        "name": "service",
                        "replaces": [SERVICE],
                        "numbers": LINES_SERVICE,
                        "forward_to": "PJSIP/service",
                    },
                ],
            },
            {
                "name": "private",
                "origins": [origin],
                "replace": ["+7 495 123-45-67"],
                "pools": [{"name": "all", "numbers": PRIVATE}],
                "respect_privacy_signals": True,
            },
        ],
        "database": f"sqlite+aiosqlite:///{workdir / 'calltrack.db'}",
        "api_tokens": [
            {"name": "test", "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
        ],
        "http": {"ping_interval": ping_interval},
    }
    config_path = workdir / "calltrack.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log = workdir / "daemon.log"
    subprocess.run(
        [*_calltrack(), "db", "upgrade", "-c", str(config_path)],
        check=True,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *_calltrack(),
                "serve",
                "-c",
                str(config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    daemon = Daemon(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(daemon.url + "/widget.js", timeout=1) as response:
                if response.status == 200:
                    return daemon
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    daemon.stop()
    pytest.fail(f"calltrack serve did not come up:\n{log.read_text()[-3000:]}", pytrace=False)


@pytest.fixture(scope="session")
def daemon_factory(
    tmp_path_factory: pytest.TempPathFactory, demo: Server
) -> Iterator[Callable[[str, float], Daemon]]:
    daemons: dict[tuple[str, float], Daemon] = {}

    def get(freeze_time: str = "15m", ping_interval: float = 30) -> Daemon:
        key = (freeze_time, ping_interval)
        if key not in daemons:
            workdir = tmp_path_factory.mktemp(f"daemon-{freeze_time}-{ping_interval}")
            daemons[key] = start_daemon(workdir, demo.url, freeze_time, ping_interval)
        return daemons[key]

    yield get
    for daemon in daemons.values():
        daemon.stop()


@pytest.fixture(scope="session")
def daemon(daemon_factory: Callable[[str, float], Daemon]) -> Daemon:
    return daemon_factory("15m", 30)


@dataclass
class StubState:
    mode: str = "ok"
    requests: list[str] = field(default_factory=list)
    posts: list[tuple[str, Any]] = field(default_factory=list)  # (path, JSON body) of each
    session_id: str = "s" * 32  # the session the stub answers
    numbers: list[dict[str, str]] | None = None  # the numbers it answers, if not STUB_ANSWER's


STUB_NUMBER = {
    "replace": "+7 495 123-45-67",
    "own": "+74951234567",
    "number": "+74990000001",
    "display": "+7 499 000-00-01",
}
STUB_ANSWER = {
    "visitor_id": "v" * 32,
    "session_id": "s" * 32,
    "numbers": [STUB_NUMBER],
    "ping_interval_s": 1,
}


def _stub_handler(state: StubState) -> type[SimpleHTTPRequestHandler]:
    class Stub(_QuietHandler):
        """Serves the real widget.js; answers the API as `state.mode` says."""

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/widget.js":
                self.send_error(404)
                return
            body = WIDGET.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/javascript")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length)
            try:
                state.posts.append((self.path, json.loads(sent)))
            except ValueError:
                state.posts.append((self.path, None))
            state.requests.append(self.path)
            mode = state.mode
            if mode == "hang-up":
                self.close_connection = True
                return
            status = 200
            answer = {**STUB_ANSWER, "session_id": state.session_id}
            if state.numbers is not None:
                answer["numbers"] = state.numbers
            body = json.dumps(answer).encode()
            if mode == "ping-404" and self.path.endswith("/ping"):
                mode = "404"  # the session is over; visits are answered as usual
            if mode == "slow":
                time.sleep(3)
            elif mode.isdigit():
                status, body = int(mode), b'{"error": "no"}'
            elif mode == "not-json":
                body = b"<html>Bad gateway</html>"
            elif mode == "bad-shape":
                body = b'{"numbers": [{"replace": 5, "number": null}, "x"], "session_id": 7}'
            elif mode == "numbers-not-a-list":
                body = b'{"numbers": "+74990000001", "ping_interval_s": "soon"}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the widget gave up waiting, as it should

    return Stub


@pytest.fixture(scope="session")
def stub() -> Iterator[tuple[Server, StubState]]:
    state = StubState()
    server = _serve(_stub_handler(state))
    yield server, state
    server.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """One Playwright per module: a second one at once in the same thread cannot start."""
    if not Path(CHROMIUM).exists():
        _no_browser(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright package is not installed")
    started = sync_playwright().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    yield from _chromium(playwright)


@pytest.fixture(scope="module")
def bfcache_browser(playwright: Any) -> Iterator[Any]:
    """Chromium with its back/forward cache on, as browsers ship (Playwright turns it off)."""
    yield from _chromium(playwright, ignore_default_args=["--disable-back-forward-cache"])


def _chromium(playwright: Any, **options: Any) -> Iterator[Any]:
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, **options
        )
    except Exception as exc:
        _no_browser(f"Chromium at {CHROMIUM} does not start: {exc}")
    yield browser
    browser.close()


@dataclass
class Watched:
    """A page and what it complained about: uncaught errors and console errors."""

    page: Any
    errors: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)

    def problems(self, tracker: str) -> list[str]:
        """Errors other than the browser's own log line for a failed request to the tracker."""
        out = [f"pageerror: {e}" for e in self.errors]
        for text, url in self.console:
            if text.startswith("Failed to load resource") and url.startswith(tracker):
                continue
            out.append(f"console.error: {text} ({url})")
        return out


def watch(page: Any) -> Watched:
    watched = Watched(page)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            msg.type == "error" and watched.console.append((msg.text, msg.location.get("url", "")))
        ),
    )
    return watched


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Watched]]:
    """Pages in fresh browser contexts (own storage each: a new visitor each)."""
    contexts: list[Any] = []

    def make() -> Watched:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        contexts.append(context)
        return watch(context.new_page())

    yield make
    for context in contexts:
        context.close()
