"""`calltrack export google-ads|metrica -c CONFIG --since D --until D [-o FILE]`: the ad
platforms' upload files of a range of local days (pbx.ad_exports), for a person or a cron job
to upload; what was left out, and why, goes to stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from attribution.reports import DayError, read_day, report_range
from integrations.conversions import Export
from pbx.ad_exports import (
    DEFAULT_DAYS,
    GOOGLE_ADS,
    METRICA,
    METRICA_YCLID,
    NotConfigured,
    build,
    read_calls,
)
from pbx.pool_sizing import today

_HELP = {
    GOOGLE_ADS: "Google Ads offline click conversions (calls from a gclid, gbraid or wbraid)",
    METRICA: "Yandex Metrica offline calls of visits with a ClientID (client_id_type CLIENT_ID)",
    METRICA_YCLID: "Yandex Metrica offline calls from a Direct click, by its yclid",
}


def add_commands(commands: Any) -> None:
    """The `export` command group, on calltrack's subcommand parser."""
    group = commands.add_parser("export", help="upload files for the ad platforms")
    kinds = group.add_subparsers(dest="export_kind", required=True)
    for kind, text in _HELP.items():
        command = kinds.add_parser(kind, help=text)
        command.add_argument("-c", "--config", required=True)
        command.add_argument(
            "--since", help="first day (ui.timezone), 2026-11-01; default: 21 days ago"
        )
        command.add_argument("--until", help="last day, included; default: today")
        command.add_argument("-o", "--output", help="file to write (default: standard output)")
        command.set_defaults(run=cmd_export, kind=kind)


def _day(text: str | None, name: str, default: date) -> date:
    if text == "":
        raise DayError(f"{name}: expected a date like 2026-11-30")
    return read_day(text, name, default)


def cmd_export(args: argparse.Namespace) -> int:
    from pbx.cli import _load
    from pbx.staff_ui.export import upload_text
    from pbx.storage.conversions import TooManyCalls
    from pbx.storage.db import OutdatedSchema, current_engine

    settings = _load(args.config)
    try:
        # by default the days Metrica still links to visits (the page's default too)
        first, last = report_range(today(settings, time.time()), DEFAULT_DAYS)
        since, until = _day(args.since, "--since", first), _day(args.until, "--until", last)
    except DayError as exc:
        print(f"calltrack export: {exc}", file=sys.stderr)
        return 2
    if until < since:
        print("calltrack export: --until: expected a date on or after --since", file=sys.stderr)
        return 2

    async def run() -> Export:
        async with current_engine(settings.database, args.config, read_only=True) as engine:
            calls = await read_calls(engine, settings, since, until)
        return build(args.kind, calls, settings, time.time())

    try:
        export = asyncio.run(run())
    except (OutdatedSchema, NotConfigured, TooManyCalls) as exc:
        print(f"calltrack export: {exc}", file=sys.stderr)
        return 2
    text = upload_text(export.lines)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"calltrack export: {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    print(f"{args.kind} {since}..{until}: {export.summary()}", file=sys.stderr)
    return 0
