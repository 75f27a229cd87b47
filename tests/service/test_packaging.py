"""`pip install` of the built wheel gives a working `calltrack`: config check, schema, migrations,
templates and static files all come from the installed package, not from the source tree.

The wheel is built with `python -m build` (a test dependency) without build isolation, so it
needs no network; it goes into a fresh venv with `--no-deps`, which sees the project venv's
dependencies (and nothing of the source tree) through a .pth file.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.lease_api import free_port
from tests.helpers import config_dict, write_config

REPO = Path(__file__).resolve().parents[2]
LEFTOVERS = (".git", ".venv", "build", "dist", "*.egg-info", "node_modules", "__pycache__", "var")


def head_revision() -> str:
    """The newest migration, read from the source tree's migration files."""
    revisions, parents = set(), set()
    for path in (REPO / "pbx" / "migrations" / "versions").glob("*.py"):
        text = path.read_text()
        revisions.add(re.search(r'^revision = "([^"]+)"', text, re.M)[1])  # type: ignore[index]
        parent = re.search(r'^down_revision = "([^"]+)"', text, re.M)
        if parent:
            parents.add(parent[1])
    (head,) = revisions - parents
    return head


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel installed; its bin/ folder."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("python -m build is missing: pip install -e '.[test]'")
    folder = tmp_path_factory.mktemp("wheel")
    # a copy without what earlier builds left (build/, *.egg-info/ with a stale SOURCES.txt
    # that setuptools would reuse), so the package data declared in pyproject.toml decides
    source = folder / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*LEFTOVERS))
    # sdist first, then the wheel from the sdist: both must carry the data files
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(folder), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = folder.glob("calltrack-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    deps = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    (site / "project-deps.pth").write_text("".join(f"{p}\n" for p in deps))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv / "bin"


def run(program: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_package_comes_from_the_venv_not_the_source_tree(
    installed: Path, tmp_path: Path
) -> None:
    probe = run(
        installed / "python",
        "-c",
        "import pbx, pbx.migrations, pbx.staff_ui, web_widget; print(pbx.__file__);"
        "print(web_widget.__file__)",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    venv = installed.parent.resolve()
    for line in probe.stdout.split():
        assert Path(line).resolve().is_relative_to(venv), line


def test_check_schema_and_upgrade_from_outside_the_source_tree(
    installed: Path, tmp_path: Path
) -> None:
    db = tmp_path / "data" / "calltrack.db"
    config = write_config(tmp_path / "calltrack.yaml", config_dict(f"sqlite+aiosqlite:///{db}"))

    checked = run(installed / "calltrack", "check", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "OK (1 site(s), 3 tracking number(s), 1 static number(s))" in checked.stdout

    schema = run(installed / "calltrack", "schema", cwd=tmp_path)
    assert schema.returncode == 0, schema.stderr
    assert '"freeze_time"' in schema.stdout

    upgraded = run(installed / "calltrack", "db", "upgrade", "-c", str(config), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    with sqlite3.connect(db) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == head_revision()


def test_the_installed_daemon_serves_templates_and_static_files(
    installed: Path, tmp_path: Path
) -> None:
    db = tmp_path / "calltrack.db"
    config = write_config(tmp_path / "calltrack.yaml", config_dict(f"sqlite+aiosqlite:///{db}"))
    assert (
        run(installed / "calltrack", "db", "upgrade", "-c", str(config), cwd=tmp_path).returncode
        == 0
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    daemon = subprocess.Popen(
        [str(installed / "calltrack"), "serve", "-c", str(config), "--port", str(port)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        deadline = time.monotonic() + 20
        while True:
            assert daemon.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        status, page = get("/login")
        assert status == 200 and '<form method="post"' in page, page[:500]
        assert get("/static/ui/ui.css")[0] == 200
        status, widget = get("/widget.js")
        assert status == 200
        assert widget == (REPO / "web_widget" / "static" / "widget.js").read_text()
    finally:
        daemon.terminate()
        daemon.wait(10)
        log.close()
