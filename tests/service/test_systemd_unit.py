"""contrib/calltrack.service: what issue 15 asks of it, and systemd's own verdict on it."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert unit["WorkingDirectory"] == unit["ReadWritePaths"] == "/var/lib/calltrack"
    for setting, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert unit[setting] == value, setting


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
