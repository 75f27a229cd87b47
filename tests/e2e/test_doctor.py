"""`calltrack doctor` against the real lab Asterisk: all OK while healthy, then each fault
injected one at a time (and put back) gives its FAIL or SKIP line, and only that one."""

from __future__ import annotations

import asyncio
import copy
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from dialplan.generator import render_dialplan
from pbx.doctor import Result, Status
from pbx.doctor.run import diagnose
from pbx.settings import Settings, load_settings
from tests.asterisk.conftest import LAB_DIALPLAN, REPO, lab, load_lab_dialplan
from tests.e2e.conftest import serving, write_daemon_config

LAB_ETC = LAB_DIALPLAN.parent
# asterisk.conf.d/manager_doctor.conf: the daemon's user plus `write = command,config,user`
DOCTOR_AMI = {"username": "calltrack-doctor", "secret": "calltrack-lab-doctor"}
Change = Callable[[dict[str, Any], Path], None]


@pytest.fixture
def lab_doctor_user(lab_dialplan: Settings) -> Iterator[Settings]:
    """The running lab with this checkout's manager.conf, which adds the doctor's AMI user."""
    changed = False
    for name in ("manager.conf", "manager_doctor.conf"):
        text = (REPO / "asterisk.conf.d" / name).read_text()
        target = LAB_ETC / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            changed = True
    if changed:
        assert lab("rx", "manager reload").returncode == 0
    yield lab_dialplan


def _variant(base: Path, folder: Path, change: Change) -> Settings:
    with base.open() as f:
        config: dict[str, Any] = YAML(typ="safe").load(f)
    config = copy.deepcopy(config)
    change(config, folder)
    path = folder / "calltrack.yaml"
    with path.open("w") as f:
        YAML().dump(config, f)
    return load_settings(path)


async def _doctor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`calltrack doctor -c CONFIG` as an admin runs it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pbx.cli", "doctor", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _not_ok(results: list[Result]) -> dict[str, Result]:
    return {r.check: r for r in results if r.status not in (Status.OK, Status.WARN)}


def _ami(**values: str) -> Change:
    def change(config: dict[str, Any], _folder: Path) -> None:
        config["asterisk"]["ami"].update(values)

    return change


def _cdr(text: str | None) -> Change:
    def change(config: dict[str, Any], folder: Path) -> None:
        path = folder / "cdr" / f"Master-{text is None}.csv"
        if text is not None:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        config["asterisk"]["cdr_csv"] = str(path)

    return change


def _fresh_database(config: dict[str, Any], folder: Path) -> None:
    config["database"] = f"sqlite+aiosqlite:///{folder / 'never-upgraded.db'}"


def _extra_did(config: dict[str, Any], _folder: Path) -> None:
    config["static"].append({"number": "+74990000077", "source": "radio"})


async def test_doctor_on_the_lab(lab_doctor_user: Settings, tmp_path: Path) -> None:
    config = write_daemon_config(tmp_path)
    with config.open() as f:
        data = YAML(typ="safe").load(f)
    data["asterisk"]["ami"].update(DOCTOR_AMI)
    with config.open("w") as f:
        YAML().dump(data, f)

    async with serving(config, tmp_path):
        healthy = await _doctor(config)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        lines = healthy.stdout.splitlines()
        checks = ["AMI", "AMI rights", "AMI events", "AMI eventfilter", "timestampevents"]
        checks += ["dialplan", "DIDs"]
        checks += ["FastAGI", "CDR", "recordings", "database"]
        for check in checks:
            assert any(line.startswith(f"OK   {check}: ") for line in lines), healthy.stdout
        assert not [line for line in lines if not line.startswith(("OK ", "WARN"))]
        assert (
            "OK   AMI eventfilter: [calltrack-doctor] in manager.conf (as on disk): its 9"
            in healthy.stdout
        )
        # the daemon's user, read by doctor's: the one whose filter decides what calltrack sees
        daemons = await _doctor(config, "--ami-user", "calltrack")
        assert daemons.returncode == 0, daemons.stdout + daemons.stderr
        assert (
            "OK   AMI eventfilter: [calltrack] in manager.conf (as on disk): its 9"
            in daemons.stdout
        )

        cases = itertools.count()

        async def only(
            change: Change, *expected: str, daemon: str | None = None
        ) -> dict[str, Result]:
            folder = tmp_path / f"case-{next(cases)}"
            await asyncio.to_thread(folder.mkdir)
            variant = _variant(config, folder, change)
            results = await diagnose(variant, str(config), daemon_user=daemon)
            bad = _not_ok(results)
            assert set(bad) == set(expected), [r.line() for r in results]
            return bad

        wrong = await only(
            _ami(secret="not-the-secret"),
            *("AMI", "AMI rights", "AMI events", "AMI eventfilter", "timestampevents"),
            *("dialplan", "DIDs"),
        )
        assert wrong["AMI"].status is Status.FAIL and "refused the login" in wrong["AMI"].message
        assert wrong["dialplan"].status is Status.SKIP

        # the daemon's own least-privilege user: the checks needing more are skipped, not failed
        plain = await only(
            _ami(username="calltrack", secret="calltrack-lab-secret"),
            *("AMI rights", "AMI events", "AMI eventfilter", "timestampevents", "dialplan", "DIDs"),
        )
        assert all(r.status is Status.SKIP for r in plain.values())
        assert "`write = config`" in plain["AMI eventfilter"].fix
        assert "`write = command`" in plain["dialplan"].fix
        assert "`write = user`" in plain["AMI events"].fix

        # the daemon's user with a filter from before the bridge events, as an upgraded PBX may
        # still have it: read through doctor's user, which may read manager.conf
        daemon_user = LAB_ETC / "manager_calltrack.conf"
        shipped = daemon_user.read_text()
        older = "".join(line for line in shipped.splitlines(True) if "name(Bridge" not in line)
        try:
            daemon_user.write_text(older)
            assert lab("rx", "manager reload").returncode == 0
            bridgeless = await only(lambda c, f: None, "AMI eventfilter", daemon="calltrack")
            assert bridgeless["AMI eventfilter"].status is Status.FAIL
            assert bridgeless["AMI eventfilter"].message.startswith(
                "[calltrack] in manager.conf (as on disk): its eventfilter drops BridgeEnter of"
            )
            assert "restart calltrack" in bridgeless["AMI eventfilter"].fix
            await only(lambda c, f: None)  # doctor's own user: not the daemon's filter
        finally:
            daemon_user.write_text(shipped)
            assert lab("rx", "manager reload").returncode == 0

        missing = await only(_extra_did, "dialplan", "DIDs")
        assert "+74990000077" in missing["DIDs"].message
        assert "extension 74990000077 is missing" in missing["dialplan"].message

        cdr = await only(_cdr(None), "CDR")
        assert "does not exist" in cdr["CDR"].message
        short_row = '"","sipp","74990000002","calltrack-inbound-call"\n'
        cdr = await only(_cdr(short_row), "CDR")
        assert "4 columns" in cdr["CDR"].message

        db = await only(_fresh_database, "database")
        assert "db upgrade" in db["database"].fix

        # the lab's Asterisk runs as root (read from /proc: it names no runuser), whom no mode
        # stops: the fault is a folder gone, a file in its place
        assert any(
            line.startswith("OK   recordings: ") and "root (Asterisk) writes" in line
            for line in lines
        ), healthy.stdout
        recordings = lab_doctor_user.asterisk_recordings_dir
        aside = recordings.with_name(f"{recordings.name}.aside")
        recordings.rename(aside)
        try:
            recordings.write_text("not a folder")
            gone = await only(lambda c, f: None, "recordings")
            assert "is not a folder" in gone["recordings"].message
        finally:
            recordings.unlink(missing_ok=True)
            aside.rename(recordings)

        # a dialplan from an older config (another ring timeout), then none, then back
        older = lab_doctor_user.model_copy(
            update={"asterisk": lab_doctor_user.asterisk.model_copy(update={"ring_timeout": 99.0})}
        )
        try:
            LAB_DIALPLAN.write_text(render_dialplan(older))
            assert lab("rx", "dialplan reload").returncode == 0
            stale = await only(lambda c, f: None, "dialplan")
            assert "not current" in stale["dialplan"].message
            assert "Dial(${CALLTRACK_DEST},99)" in stale["dialplan"].message
            LAB_DIALPLAN.write_text("; nothing\n")
            assert lab("rx", "dialplan reload").returncode == 0
            gone = await only(lambda c, f: None, "dialplan", "DIDs")
            assert "is not loaded" in gone["dialplan"].message
        finally:
            load_lab_dialplan(lab_doctor_user)

    stopped = await _doctor(config, "--json")
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert '"check": "FastAGI",\n      "status": "fail"' in stopped.stdout
