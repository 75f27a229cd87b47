"""`calltrack costs import -c CONFIG FILE.csv`: load ad spend from a cost file or an ad
platform's export (see attribution.costs for the shapes and pbx.storage.costs for the rule)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from attribution.costs import (
    MAX_FILE_BYTES,
    PRESETS,
    CostFile,
    CostFileError,
    layout_for,
    read_costs,
)
from attribution.money import cents_text
from attribution.reports import day_of


def add_commands(commands: Any) -> None:
    """The `costs` command group, on calltrack's subcommand parser."""
    group = commands.add_parser("costs", help="ad spend per day and channel")
    group_commands = group.add_subparsers(dest="costs_command", required=True)
    load = group_commands.add_parser(
        "import",
        help="replace the costs of the file's days and sources with the file's rows",
    )
    load.add_argument("-c", "--config", required=True)
    load.add_argument("file", metavar="FILE.csv")
    load.add_argument("--preset", choices=sorted(PRESETS), help="an ad platform's export shape")
    load.add_argument(
        "--map", dest="column_map", metavar="ROLE=HEADER,...", help="e.g. cost=Cost,date=Day"
    )
    load.add_argument("--source", help="the source of every row (for files without one)")
    load.add_argument("--medium", help="the medium of every row (for files without one)")
    load.add_argument(
        "--dry-run", action="store_true", help="print what would be imported; store nothing"
    )
    load.set_defaults(run=cmd_costs_import)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)  # read_costs refuses the oversized
    except OSError as exc:
        raise CostFileError([f"{path}: cannot be read ({exc.strerror})"]) from None


def cmd_costs_import(args: argparse.Namespace) -> int:
    from pbx.cli import _load
    from pbx.storage.costs import replace_costs
    from pbx.storage.db import OutdatedSchema, current_engine

    settings = _load(args.config)
    try:
        layout = layout_for(args.preset, args.column_map, args.source, args.medium)
        # the name as the rows' `file` says it: bytes of a name that are not UTF-8 as U+FFFD
        name = os.fsencode(args.file).decode("utf-8", "replace")
        cost_file = read_costs(_read(args.file), name, layout)
    except CostFileError as exc:
        print(exc.text(), file=sys.stderr)
        print(f"{args.file}: nothing imported", file=sys.stderr)
        return 2
    if args.dry_run:
        _print_rows(cost_file)
        print(f"dry run, nothing stored: {cost_file.summary(settings.currency)}")
        return 0

    async def run() -> None:
        async with current_engine(settings.database, args.config) as engine:
            await replace_costs(engine, cost_file, time.time())

    try:
        asyncio.run(run())
    except OutdatedSchema as exc:
        print(f"calltrack: {exc}", file=sys.stderr)
        return 2
    print(f"imported {cost_file.summary(settings.currency)}")
    return 0


def _print_rows(cost_file: CostFile) -> None:
    for row in cost_file.rows:
        print(
            f"{day_of(row.day)}\t{row.source}\t{row.medium}\t{row.campaign}"
            f"\t{cents_text(row.cost_cents)}"
        )
