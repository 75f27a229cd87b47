"""`calltrack links rotate -c CONFIG [--revoke]`: a new key for the recording links webhooks send.

Whoever reads the database, or a backup of it, can sign a link to every recording: after such a
leak rotate the key with `--revoke`, and links sent before stop opening; as a routine, without
it, they keep opening until they expire (pbx/storage/link_keys.py). Running daemons take the new
key within pbx.storage.link_keys.KEY_REFRESH seconds, without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any


def add_commands(commands: Any) -> None:
    """The `links` command, on calltrack's subcommand parser."""
    links = commands.add_parser("links", help="the key that signs recording links")
    link_commands = links.add_subparsers(dest="links_command", required=True)
    rotate = link_commands.add_parser(
        "rotate", help="sign recording links with a new key from now on"
    )
    rotate.add_argument("-c", "--config", required=True)
    rotate.add_argument(
        "--revoke",
        action="store_true",
        help="links sent before stop opening, on a running daemon once it has read the new key"
        " (default: they open until they expire)",
    )
    rotate.set_defaults(run=cmd_rotate)


def cmd_rotate(args: argparse.Namespace) -> int:
    from pbx.cli import _load
    from pbx.storage.db import current_engine
    from pbx.storage.link_keys import KEY_REFRESH, rotate

    settings = _load(args.config)

    async def run() -> None:
        async with current_engine(settings.database, args.config) as engine:
            await rotate(engine, time.time(), revoke=args.revoke)

    asyncio.run(run())
    days = settings.webhooks.recording_link_ttl / 86400
    before = (
        "links sent before no longer open (on a running daemon: once it has read the new key)"
        if args.revoke
        else f"links sent before open until they expire (webhooks.recording_link_ttl: {days:g} days"
        " at most)"
    )
    print(
        f"recording links: a new key signs them from now on; {before}."
        f" Running daemons take it within {KEY_REFRESH:g} s."
    )
    return 0
