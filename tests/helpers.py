"""Building blocks shared by the test suites: a settable clock, configs, a migrated database."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.auth import hash_password
from pbx.settings import Settings, parse_settings
from pbx.storage.db import open_engine, upgrade
from pbx.storage.visits import VisitStore

STAFF_TOKEN = "test-staff-token"
ORIGIN = "http://shop.test"


class FakeClock:
    """Time that moves only when a test says so, so freeze-time edges are exact."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config_dict(database: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "freeze_time": "60s",
        "forward_to": "PJSIP/realline",
        "region": "RU",  # the second own number is written nationally
        "sites": [
            {
                "name": "main",
                "origins": [ORIGIN],
                "replace": ["+7 (495) 123-45-67", "8 495 1234567"],
                "pools": [
                    {
                        "name": "paid",
                        "when": {"utm_medium": ["cpc", "ppc"]},
                        "numbers": ["+74990000001", "+74990000002"],
                    },
                    {
                        "name": "organic",
                        "when": {"utm_medium": "organic"},
                        "numbers": ["+74990000011"],
                    },
                ],
                "fallback": "+74990000099",
            }
        ],
        "static": [
            {"number": "+74990000101", "source": "billboard", "medium": "offline"},
        ],
        "database": database,
        "api_tokens": [
            {"name": "staff", "token_sha256": hashlib.sha256(STAFF_TOKEN.encode()).hexdigest()}
        ],
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    with path.open("w") as out:
        YAML().dump(config, out)
    return path


def make_settings(database: str, **overrides: Any) -> Settings:
    return Settings.model_validate(config_dict(database, **overrides))


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings read back from a config file written in `tmp_path`, with a database beside it."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'calltrack.db'}"
    path = write_config(tmp_path / "calltrack.yaml", config_dict(database, **overrides))
    return parse_settings(path.read_text(), str(path), tmp_path)


def db_error(kind: type[DBAPIError], message: str, **flags: bool) -> DBAPIError:
    """A database failure as SQLAlchemy raises it around the driver's, e.g. `OperationalError`."""
    return kind("INSERT INTO calls ...", {}, Exception(message), **flags)


#: What a caller could send as their name if it reached AMI with its CR/LF: lines that try to
#: name the call's tracking number and recording, move the event to another call and change it.
SMUGGLED = (
    "sipp\r\nDID: +74990000666\r\nRecording: forged.wav\r\nUniqueid: 1.1\r\nLinkedid: 1.1"
    "\r\nEvent: Hangup\r\nTimestamp: 1.0\r\nUserEvent: CalltrackEnd\r\nDialStatus: BUSY"
)


def smuggle(raw_ami: str) -> str:
    """Raw AMI text with the caller's name, wherever Asterisk writes it, replaced by SMUGGLED."""
    return re.sub(
        r"^((?:Dest)?(?:CallerIDName|ConnectedLineName)): sipp\r$",
        lambda m: f"{m[1]}: {SMUGGLED}\r",
        raw_ami,
        flags=re.MULTILINE,
    )


async def migrate(settings: Settings) -> None:
    engine = open_engine(settings.database)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


PASSWORD = "correct horse"


@functools.cache
def staff_users() -> list[dict[str, str]]:
    """An admin and a staff user, both with PASSWORD (hashed once per test run: argon2 is slow)."""
    hashed = hash_password(PASSWORD)
    return [
        {"name": "ada", "password_argon2": hashed, "role": "admin"},
        {"name": "sam", "password_argon2": hashed, "role": "staff"},
    ]


def aiosqlite_threads() -> set[threading.Thread]:
    """aiosqlite's worker threads alive now (one per open connection)."""
    return {
        thread
        for thread in threading.enumerate()
        if thread.name.endswith("(_connection_worker_thread)")
    }


async def aiosqlite_threads_done(besides: set[threading.Thread], within: float = 5.0) -> None:
    """Wait, while this test's event loop still runs, for aiosqlite's worker threads to end but
    those in `besides` (connections of fixtures, still open). A connect cancelled mid-way (a task
    cancelled while the database cannot be opened) goes on in its thread; finishing after the
    loop closed, it raises there, and pytest blames whatever test runs at that moment (an
    "Event loop is closed" warning on a test without a database)."""
    for thread in aiosqlite_threads() - besides:
        await asyncio.to_thread(thread.join, within)


def refuse_opening(monkeypatch: Any, path: Path) -> Callable[..., Any]:
    """Path.open raises PermissionError (EACCES) for `path`, as for a file of a mode the
    daemon's user may not read (the tests run as root, whom no mode stops); returns the real
    Path.open, to be set back (`monkeypatch.setattr(Path, "open", it)`) once it is mended."""
    opening = Path.open

    def refused(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return opening(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    return opening


@dataclass
class Stored:
    store: VisitStore
    engine: AsyncEngine
    settings: Settings
    clock: FakeClock


@contextlib.asynccontextmanager
async def visit_store(database: str, **overrides: Any) -> AsyncIterator[Stored]:
    """A visitor store on a new migrated database at the URL `database` (the config's
    `overrides` applied), its numbers synced; closed and disposed after."""
    settings = make_settings(database, **overrides)
    engine = open_engine(database)
    try:
        await upgrade(engine)
        clock = FakeClock()
        store = VisitStore(engine, settings, clock)
        await store.sync_numbers()
        yield Stored(store, engine, settings, clock)
        store.close()
    finally:
        await engine.dispose()
