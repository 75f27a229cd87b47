"""`calltrack serve` under systemd: READY=1 once it serves, WATCHDOG=1 from the event loop at
half of WATCHDOG_USEC (and none while the loop is frozen), STOPPING=1 on SIGTERM. The test plays
systemd: it binds the datagram socket that NOTIFY_SOCKET names and reads what arrives."""

from __future__ import annotations

import errno
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.lease_api import free_port
from pbx.sd_notify import notify, watchdog_interval
from tests.helpers import config_dict, write_config

WATCHDOG_USEC = 1_000_000
PING_EVERY = WATCHDOG_USEC / 1e6 / 2  # what systemd advises: half the timeout

# The product's `calltrack serve`, whose loop a bug blocks for FREEZE s, 1 s after start-up
# (this script is the test's, not the product's: the product has no way to freeze itself).
FREEZE = 2.5
FREEZING_SERVE = f"""
import asyncio, sys, time
import pbx.app, pbx.cli

build_app = pbx.app.build_app

def freezing_app(settings):
    app = build_app(settings)

    async def freeze_later(app):
        asyncio.get_running_loop().call_later(1.0, time.sleep, {FREEZE})

    app.on_startup.append(freeze_later)
    return app

pbx.app.build_app = freezing_app
sys.exit(pbx.cli.main(sys.argv[1:]))
"""


class Systemd:
    """The notification socket, and what the daemon said on it, with arrival times."""

    def __init__(self) -> None:
        # a short path: unix socket paths are limited to 107 bytes
        self.folder = Path(tempfile.mkdtemp(prefix="sdn-"))
        self.path = self.folder / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.heard: list[tuple[float, str]] = []

    def wait_for(self, message: str, within: float) -> float:
        """Read until `message` arrives; its arrival time."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            now = time.monotonic()
            self.heard.append((now, data))
            if data == message:
                return now
        raise AssertionError(f"no {message} within {within}s; heard {self.heard}")

    def listen(self, seconds: float) -> None:
        """Record everything that arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.heard.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                return

    def times(self, message: str, after: float = 0.0) -> list[float]:
        return [at for at, data in self.heard if data == message and at >= after]

    def close(self) -> None:
        self.sock.close()
        self.path.unlink()
        self.folder.rmdir()


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    listener = Systemd()
    yield listener
    listener.close()


def start(
    tmp_path: Path, systemd: Systemd, program: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    db = tmp_path / "calltrack.db"
    config = write_config(tmp_path / "calltrack.yaml", config_dict(f"sqlite+aiosqlite:///{db}"))
    cli = [sys.executable, "-m", "pbx.cli"]
    subprocess.run([*cli, "db", "upgrade", "-c", str(config)], check=True, capture_output=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}  # a CI under systemd's
    env.update(NOTIFY_SOCKET=str(systemd.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
    with (tmp_path / "serve.log").open("wb") as log:
        daemon = subprocess.Popen(
            [*program, "serve", "-c", str(config), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return daemon, f"http://127.0.0.1:{port}"


def healthz(url: str) -> int:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        return int(response.status)


def test_ready_once_serving_watchdog_pings_and_stopping_on_sigterm(
    tmp_path: Path, systemd: Systemd
) -> None:
    daemon, url = start(tmp_path, systemd, [sys.executable, "-m", "pbx.cli"])
    try:
        ready = systemd.wait_for("READY=1", within=30)
        assert healthz(url) == 200  # serving the moment systemd hears it is ready
        systemd.listen(PING_EVERY * 6 + 0.2)
        pings = systemd.times("WATCHDOG=1", after=ready)
        assert len(pings) >= 5, systemd.heard
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(gap < WATCHDOG_USEC / 1e6 for gap in gaps), gaps  # never near the timeout
        assert abs(sum(gaps) / len(gaps) - PING_EVERY) < 0.1, gaps
        daemon.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING=1", within=10)
        assert daemon.wait(10) == 0
        assert [data for _, data in systemd.heard].count("READY=1") == 1
    finally:
        daemon.kill()
        daemon.wait()


def test_a_frozen_loop_stops_the_pings(tmp_path: Path, systemd: Systemd) -> None:
    daemon, _url = start(tmp_path, systemd, [sys.executable, "-c", FREEZING_SERVE])
    try:
        ready = systemd.wait_for("READY=1", within=30)
        systemd.listen(1.0 + FREEZE + 3.0)  # before, during and well after the freeze
        pings = systemd.times("WATCHDOG=1", after=ready)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        frozen = gaps.index(max(gaps))
        assert gaps[frozen] > FREEZE - 0.3, gaps  # silent while frozen: systemd would restart it
        # and pinging again, at its pace, once the loop runs (a loaded machine delays some)
        assert any(gap < FREEZE / 2 for gap in gaps[frozen + 1 :]), gaps
    finally:
        daemon.kill()
        daemon.wait()


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"calltrack-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"READY=1"


def test_nothing_is_sent_outside_systemd() -> None:
    assert not notify("READY=1", {})


def test_pings_are_asked_only_of_the_process_systemd_named() -> None:
    asked = {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "3000000"}
    assert watchdog_interval(asked) == 1.5
    assert watchdog_interval({**asked, "WATCHDOG_PID": str(os.getpid())}) == 1.5
    assert watchdog_interval({**asked, "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({**asked, "WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) is None


def test_a_moment_out_of_descriptors_is_a_warning_not_the_end_of_the_pings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The notify socket was created outside notify()'s try: one EMFILE (a burst of visitors
    as a ping fell due) ended the watchdog task for good, and systemd killed the healthy
    daemon WatchdogSec later."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        systemd.settimeout(5)
        real = socket.socket

        def out_of_descriptors(*_args: object, **_kwargs: object) -> socket.socket:
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(socket, "socket", out_of_descriptors)
        assert not notify("WATCHDOG=1", {"NOTIFY_SOCKET": path})
        assert (
            "could not notify systemd (WATCHDOG=1): [Errno 24] Too many open files" in caplog.text
        )
        monkeypatch.setattr(socket, "socket", real)
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": path})
        assert systemd.recv(64) == b"WATCHDOG=1"
