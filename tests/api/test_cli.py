"""The `calltrack` command as an admin runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pbx.auth import hash_password, verify_password
from tests.helpers import config_dict, write_config

EXAMPLE = Path(__file__).parents[2] / "config" / "example.yaml"


def calltrack(
    *args: str, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pbx.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "calltrack.yaml", config_dict("sqlite+aiosqlite:///calltrack.db")
    )


def test_check_reports_problems_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("freeze_time: 1 fortnight\nforward_to: PJSIP/x\nsites: []\nsurprise: 1\n")
    result = calltrack("check", str(path))
    assert result.returncode == 2
    assert f"{path}:1:1: freeze_time: expected a duration" in result.stderr
    assert f"{path}:4:1: surprise: unknown key 'surprise'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    result = calltrack("check", str(config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "OK (1 site(s), 3 tracking number(s), 1 static number(s))" in result.stdout


def test_serve_refuses_an_unmigrated_database_and_says_what_to_run(tmp_path: Path) -> None:
    path = config(tmp_path)
    result = calltrack("serve", "-c", str(path), "--port", "0", timeout=30)
    # EX_CONFIG: systemd does not start it again (contrib/calltrack.service)
    assert result.returncode == 78
    assert f"run `calltrack db upgrade -c {path}` first" in result.stderr


def test_serve_exits_78_on_a_config_error_so_systemd_stops_trying(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("freeze_time: 1 fortnight\nforward_to: PJSIP/x\nsites: []\n")
    result = calltrack("serve", "-c", str(path), "--port", "0", timeout=30)
    assert result.returncode == 78
    assert f"{path}:1:1: freeze_time: expected a duration" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_then_pools_lists_every_number(tmp_path: Path) -> None:
    path = config(tmp_path)
    upgraded = calltrack("db", "upgrade", "-c", str(path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "calltrack.db").exists()  # relative to the config file
    assert calltrack("db", "upgrade", "-c", str(path)).returncode == 0  # idempotent
    pools = calltrack("pools", "-c", str(path), "--json")
    assert pools.returncode == 0, pools.stderr
    rows = json.loads(pools.stdout)
    assert sorted(r["number"] for r in rows) == ["+74990000001", "+74990000002", "+74990000011"]
    assert not any(r["held"] for r in rows)
    table = calltrack("pools", "-c", str(path))
    assert "main/paid" in table.stdout and "free" in table.stdout
    assert "main/paid" in table.stdout.split("last 24 h")[1]
    assert "0/2 held now, 0 visits, 0 not tracked (0%)" in table.stdout


def test_hash_password_reads_stdin_and_prints_an_argon2_hash() -> None:
    result = calltrack("hash-password", stdin="s3cret pass\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed
    assert verify_password(hashed, "s3cret pass") and not verify_password(hashed, "s3cret")


@pytest.mark.parametrize("password", ["", "demo", "nine char"])
def test_hash_password_refuses_a_short_password(password: str) -> None:
    result = calltrack("hash-password", stdin=password + "\n")
    assert result.returncode == 2 and "at least 10 characters" in result.stderr
    assert result.stdout == ""


def test_check_warns_about_the_examples_users_and_token() -> None:
    result = calltrack("check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert f'{EXAMPLE}: warning: users[0] (admin) still has the example\'s password "demo"' in (
        result.stderr
    )
    assert "users[1] (staff) still has the example's password" in result.stderr
    assert "api_tokens[0] (demo) is the example's token" in result.stderr


def test_check_is_quiet_about_credentials_of_ones_own(tmp_path: Path) -> None:
    users = [{"name": "admin", "password_argon2": hash_password("a long secret"), "role": "admin"}]
    path = write_config(
        tmp_path / "calltrack.yaml", config_dict("sqlite+aiosqlite:///x.db", users=users)
    )
    result = calltrack("check", str(path))
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_check_warns_when_webhook_links_would_name_the_listening_address(tmp_path: Path) -> None:
    hook = {"name": "crm", "url": "https://crm.example/hook", "secret": "s" * 32}
    path = write_config(
        tmp_path / "calltrack.yaml", config_dict("sqlite+aiosqlite:///x.db", webhooks=[hook])
    )
    result = calltrack("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning: webhooks: http.public_url is not set" in result.stderr


def test_export_defaults_to_the_days_metrica_still_links(tmp_path: Path) -> None:
    from datetime import date, timedelta

    path = config(tmp_path)
    assert calltrack("db", "upgrade", "-c", str(path)).returncode == 0
    result = calltrack("export", "metrica", "-c", str(path))
    assert result.returncode == 0, result.stderr
    today = date.today()  # the config's ui.timezone is UTC, as the test machine's clock
    assert f"metrica {today - timedelta(days=20)}..{today}:" in result.stderr
