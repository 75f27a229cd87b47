"""The lab Asterisk for tests/asterisk: started if it is not running.

Without the lab (not root, no debootstrap, no mirror) these tests are skipped, unless
CALLTRACK_REQUIRE_LAB=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialplan.generator import render_dialplan
from pbx.settings import Settings, load_settings
from tests.asterisk.lablock import hold_lab

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "scripts" / "asterisk-lab"
LAB_CONFIG = REPO / "tests" / "fixtures" / "lab.yaml"
LAB_DIALPLAN = Path("/var/lib/calltrack-lab/etc/extensions_calltrack.conf")


def lab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAB_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("CALLTRACK_REQUIRE_LAB"):
        pytest.fail(f"lab Asterisk required (CALLTRACK_REQUIRE_LAB) but {reason}")
    pytest.skip(f"lab Asterisk unavailable: {reason}")


@pytest.fixture(scope="session")
def lab_settings() -> Settings:
    return load_settings(LAB_CONFIG)


@pytest.fixture(scope="session")
def lab_running(lab_settings: Settings) -> None:
    """Start the lab once per session if needed."""
    hold_lab()
    if lab("status").returncode == 0:
        return
    for step in ("install", "start"):
        result = lab(step)
        if result.returncode != 0:
            _unavailable(f"`asterisk-lab {step}` failed:\n{result.stdout}\n{result.stderr}")


def load_lab_dialplan(settings: Settings) -> None:
    """Give the running lab the dialplan of `settings`, reloading only when it changed."""
    text = render_dialplan(settings)
    if not LAB_DIALPLAN.exists() or LAB_DIALPLAN.read_text() != text:
        LAB_DIALPLAN.write_text(text)
        assert lab("rx", "dialplan reload").returncode == 0


@pytest.fixture
def lab_dialplan(lab_running: None, lab_settings: Settings) -> Iterator[Settings]:
    """The running lab with the dialplan of tests/fixtures/lab.yaml loaded."""
    load_lab_dialplan(lab_settings)
    yield lab_settings
