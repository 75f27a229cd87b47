"""`calltrack doctor -c CONFIG`: checks the PBX side and says what to fix, one line each
(pbx/doctor); exit status 1 when anything failed, so scripts and install steps can stop."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from pbx.doctor import failed
from pbx.doctor.run import DEFAULT_MIN_FREE, diagnose


def add_commands(commands: Any) -> None:
    """The `doctor` command, on calltrack's subcommand parser."""
    doctor = commands.add_parser(
        "doctor", help="check the PBX side (AMI, dialplan, FastAGI, CDR, recordings, database)"
    )
    doctor.add_argument("-c", "--config", required=True)
    doctor.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    doctor.add_argument(
        "--min-free-mb",
        type=int,
        default=DEFAULT_MIN_FREE // 2**20,
        help="warn when a filesystem calltrack writes to has less free space (default 1024)",
    )
    doctor.add_argument(
        "--ami-user",
        metavar="NAME",
        help="the daemon's AMI user, whose eventfilter is checked, when asterisk.ami in CONFIG"
        " is another one with the rights doctor needs (default: asterisk.ami.username)",
    )
    doctor.set_defaults(run=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from pbx.cli import _load

    settings = _load(args.config)
    results = asyncio.run(
        diagnose(settings, args.config, args.min_free_mb * 2**20, daemon_user=args.ami_user)
    )
    if args.json:
        json.dump(
            {"ok": not failed(results), "checks": [asdict(r) for r in results]},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        for result in results:
            print(result.line())
    return 1 if failed(results) else 0
