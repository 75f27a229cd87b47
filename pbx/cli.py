"""`calltrack`: serve, check a config, upgrade the database, watch the pools, write the dialplan."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from pbx import (
    backup_cli,
    costs_cli,
    doctor_cli,
    export_cli,
    links_cli,
    pools_cli,
    sd_notify,
    simulate_cli,
    transcribe_cli,
)
from pbx.settings import ConfigError, Settings, json_schema, load_settings

#: `serve`'s exit status when only the admin can mend what stopped it (the config, a database
#: not yet upgraded): sysexits' EX_CONFIG, which contrib/calltrack.service names in
#: RestartPreventExitStatus=, so systemd stops instead of starting it again every RestartSec
#: for ever. Any other failure (the database not up yet at boot) exits 1 and is restarted.
SERVE_CONFIG_ERROR = 78


def _load(path: str, *, status: int = 2) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(status) from None


def _prepare_paths(settings: Settings) -> None:
    prefix = "sqlite+aiosqlite:///"
    if settings.database.startswith(prefix):
        Path(settings.database.removeprefix(prefix)).parent.mkdir(parents=True, exist_ok=True)
    settings.recordings.dir.mkdir(parents=True, exist_ok=True)


MIN_PASSWORD = 10
#: on SIGTERM, how long open requests (a CSV export to a slow client) may finish before the
#: cleanup (write-behind flush, calls still being stored, the AMI lock) runs; aiohttp's own 60 s
#: outlasted systemd's TimeoutStopSec (contrib/calltrack.service), which then killed the
#: daemon before its flush. aiohttp waits this long twice: for the requests, then for their
#: handlers once cancelled (and rounds a wait over 5 s up to whole seconds)
HTTP_SHUTDOWN_WAIT = 5.0
# what config/example.yaml ships with: a config that still has them is open to anyone
EXAMPLE_PASSWORD = "demo"
EXAMPLE_TOKEN_SHA256 = hashlib.sha256(b"demo-token").hexdigest()


def config_warnings(settings: Settings) -> list[str]:
    """What `check` warns about, each a line to print: the example's users and token still in
    the config, and webhooks whose recording links would name the listening address."""
    from pbx.auth import verify_password

    found = [
        f'users[{i}] ({user.name}) still has the example\'s password "{EXAMPLE_PASSWORD}";'
        " set a new one with `calltrack hash-password`"
        for i, user in enumerate(settings.users)
        if verify_password(user.password_argon2, EXAMPLE_PASSWORD)
    ]
    found += [
        f"api_tokens[{i}] ({token.name}) is the example's token; make a new one"
        for i, token in enumerate(settings.api_tokens)
        if token.token_sha256 == EXAMPLE_TOKEN_SHA256
    ]
    if settings.webhooks.targets and not settings.http.public_url:
        found.append(
            "webhooks: http.public_url is not set, so the recording links they carry name the"
            " daemon's listening address; set the address receivers reach it at"
        )
    return found


def cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    for warning in config_warnings(settings):
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    if settings.speech.enabled or settings.speech.model_dir:  # not at the first call
        from recordings.speech import SpeechUnavailable, load_engine

        try:
            load_engine(settings.speech)
        except SpeechUnavailable as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return 2
    numbers = sum(len(p.numbers) for s in settings.sites for p in s.pools)
    print(
        f"{args.config}: OK ({len(settings.sites)} site(s), {numbers} tracking number(s),"
        f" {len(settings.static)} static number(s))"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pbx.app import build_app, freeze_startup_heap
    from pbx.storage.db import OutdatedSchema

    settings = _load(args.config, status=SERVE_CONFIG_ERROR)
    for warning in config_warnings(settings):  # as `check` says them: the journal has them
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    _prepare_paths(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(settings)
    app.on_startup.append(freeze_startup_heap)  # after the cleanup contexts' startup steps
    try:
        web.run_app(
            app,
            host=args.host or settings.http.host,
            port=args.port or settings.http.port,
            access_log=None,
            print=sd_notify.serving,
            shutdown_timeout=HTTP_SHUTDOWN_WAIT,
        )
    except OutdatedSchema as exc:
        print(f"calltrack: {exc}".replace("-c CONFIG", f"-c {args.config}"), file=sys.stderr)
        return SERVE_CONFIG_ERROR
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from pbx.storage.db import open_engine, schema_revisions, upgrade

    settings = _load(args.config)
    _prepare_paths(settings)

    async def run() -> str | None:
        from pbx.storage.report_rollups import rebuild_reports, rollups_missing

        engine = open_engine(settings.database)
        try:
            await upgrade(engine)
            if await rollups_missing(engine):
                rebuilt = await rebuild_reports(engine, settings, time.time())
                print(f"report rollups built: {rebuilt.visits} visits, {rebuilt.calls} calls")
            return (await schema_revisions(engine))[0]
        finally:
            await engine.dispose()

    print(f"database is at revision {asyncio.run(run())}")
    return 0


def cmd_reports_rebuild(args: argparse.Namespace) -> int:
    from pbx.storage.db import current_engine
    from pbx.storage.report_rollups import Rebuilt, rebuild_reports

    settings = _load(args.config)

    async def run() -> Rebuilt:
        async with current_engine(settings.database, args.config) as engine:
            return await rebuild_reports(engine, settings, time.time())

    rebuilt = asyncio.run(run())
    print(f"report rollups rebuilt: {rebuilt.visits} visits, {rebuilt.calls} calls")
    return 0


def cmd_dialplan(args: argparse.Namespace) -> int:
    from dialplan.generator import main as generate

    return generate(["-c", args.config, *(["-o", args.output] if args.output else [])])


def cmd_hash_password(args: argparse.Namespace) -> int:
    """An argon2 hash for `users[].password_argon2`; the password is read, never an argument
    (arguments end up in shell history and in `ps`)."""
    from pbx.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("calltrack: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        print(f"calltrack: a password needs at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="calltrack", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("-c", "--config", required=True)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=cmd_serve)

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("config")
    check.set_defaults(run=cmd_check)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("-c", "--config", required=True)
    upgrade.set_defaults(run=cmd_db_upgrade)

    pools_cli.add_commands(commands)

    dialplan = commands.add_parser("dialplan", help="write the Asterisk dialplan for the config")
    dialplan.add_argument("-c", "--config", required=True)
    dialplan.add_argument("-o", "--output", help="file to write (default: standard output)")
    dialplan.set_defaults(run=cmd_dialplan)

    reports = commands.add_parser("reports", help="the rollups reports read")
    report_commands = reports.add_subparsers(dest="reports_command", required=True)
    rebuild = report_commands.add_parser(
        "rebuild", help="count visits and credit calls again (e.g. after ui.timezone changed)"
    )
    rebuild.add_argument("-c", "--config", required=True)
    rebuild.set_defaults(run=cmd_reports_rebuild)

    hashing = commands.add_parser(
        "hash-password", help="argon2 hash of a password (read from the prompt or stdin)"
    )
    hashing.set_defaults(run=cmd_hash_password)

    costs_cli.add_commands(commands)
    simulate_cli.add_commands(commands)
    export_cli.add_commands(commands)
    backup_cli.add_commands(commands)
    links_cli.add_commands(commands)
    doctor_cli.add_commands(commands)
    transcribe_cli.add_commands(commands)

    schema = commands.add_parser("schema", help="JSON schema of the config file")
    schema.add_argument("-o", "--output")
    schema.set_defaults(run=cmd_schema)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
