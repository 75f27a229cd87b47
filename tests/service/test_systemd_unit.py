"""contrib/calltrack.service: what issue 15 asks of it, and systemd's own verdict on it."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pbx import cli
from pbx.pbx_link import REPORTS_GRACE
from tests.helpers import settings_for

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "calltrack.service"
CONFIG = "/etc/calltrack/calltrack.yaml"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_the_unit_runs_calltrack_as_its_own_user_under_the_watchdog() -> None:
    unit = service()
    assert unit["Type"] == "notify"
    assert unit["WatchdogSec"] and unit["Restart"] == "always"
    assert unit["User"] == unit["Group"] == "calltrack"
    assert unit["ExecStart"].endswith(f"/calltrack serve -c {CONFIG}")
    assert unit["StateDirectory"] == "calltrack"
    assert unit["WorkingDirectory"] == "/var/lib/calltrack"
    # the state, and the recordings folder of Asterisk's group (README, On your PBX): a folder
    # of calltrack's group stays closed to an Asterisk run with a run group
    assert unit["ReadWritePaths"].split() == [
        "/var/lib/calltrack",
        "-/var/spool/asterisk/calltrack",
    ]
    for setting, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert unit[setting] == value, setting


def test_systemd_stops_on_what_only_the_admin_can_mend_and_restarts_the_rest() -> None:
    """systemd's service_shall_restart tests RestartPreventExitStatus= against the main
    process's status only: a failing ExecStartPre= check was restarted every RestartSec for
    ever, and so was serve's own exit on a config error."""
    unit = service()
    assert unit["RestartPreventExitStatus"].split() == [str(cli.SERVE_CONFIG_ERROR)]
    assert "ExecStartPre" not in unit
    assert cli.SERVE_CONFIG_ERROR != 1  # an unexpected crash (exit 1) is still restarted


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    # the commands must exist for verify: this venv's calltrack stands in for /opt/calltrack's
    calltrack = Path(sys.executable).parent / "calltrack"
    text = UNIT.read_text().replace("/opt/calltrack/bin/calltrack", str(calltrack))
    copy = tmp_path / "calltrack.service"
    copy.write_text(text)
    verdict = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    # it exits 0 on unknown keys and bad values, and only says so
    assert verdict.returncode == 0 and verdict.stderr == "", verdict.stderr


def test_systemd_waits_for_the_http_wait_and_the_cleanup_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SIGTERM aiohttp waits run_app's shutdown_timeout for open requests, and only then
    runs the cleanup (the write-behind flush, calls still being stored): its default 60 s
    outlasted TimeoutStopSec=30s, and systemd killed the daemon before its flush."""
    settings_for(tmp_path)
    asked: dict[str, Any] = {}
    monkeypatch.setattr(cli.web, "run_app", lambda _app, **kwargs: asked.update(kwargs))
    cli.main(["serve", "-c", str(tmp_path / "calltrack.yaml")])
    stop = float(service()["TimeoutStopSec"].removesuffix("s"))
    http = 2 * asked["shutdown_timeout"]  # the requests, then their cancelled handlers
    assert asked["shutdown_timeout"] <= 5, "not rounded up to whole seconds by aiohttp"
    lock = 3.0  # AmiConsumerLock's idle_limit: its connection closing
    cleanup = lock + REPORTS_GRACE + 10  # calls being stored, then the flush and the rest
    assert http + cleanup <= stop
